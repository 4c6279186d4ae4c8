// ser web page: record → POST /v1/predict, live PCM → WebSocket /v1/stream, file upload,
// and "teach it my voice" → POST /v1/voices (a personal model the other three then use).
// Plain JavaScript, no dependencies, works offline from `ser serve`.
"use strict";

const COLOURS = {
  angry: "#d62728", disgust: "#8c9d2b", fear: "#9467bd",
  happy: "#ff9f1c", neutral: "#7f7f7f", sad: "#1f77b4",
};
const FALLBACK = ["#3b5bdb", "#0ca678", "#e8590c", "#ae3ec9", "#1098ad", "#f08c00"];
const MAX_RECORD_SECONDS = 30;
const SEND_EVERY_MS = 100; // live: how often PCM is sent to the server

const $ = (id) => document.getElementById(id);
const MAX_CLIP_SECONDS = 10; // teach: one acted clip
// What to act for each emotion (a model with other labels gets "as if you felt LABEL").
const ACT = {
  angry: "furious, as if someone broke it",
  disgust: "disgusted, as if something there smells foul",
  fear: "afraid, as if something waits behind it",
  happy: "delighted, as if great news just came through it",
  neutral: "plainly, as if reading a timetable",
  sad: "sad, as if someone dear just left through it",
};
const state = { labels: [], recorder: null, live: null, voice: null };
const teach = { min: 2, max: 8, clips: {}, capture: null };

function colour(label) {
  const i = Math.max(0, state.labels.indexOf(label));
  return COLOURS[label] || FALLBACK[i % FALLBACK.length];
}

function setStatus(text, kind = "") {
  const el = $("status");
  el.textContent = text;
  el.className = "status " + kind;
}

// ------------------------------------------------------------------ result display

function buildBars() {
  const bars = $("bars");
  bars.innerHTML = "";
  for (const label of state.labels) {
    const name = document.createElement("div");
    name.className = "bar-name";
    name.textContent = label;
    name.id = "name-" + label;
    const track = document.createElement("div");
    track.className = "bar-track";
    const fill = document.createElement("div");
    fill.className = "bar-fill";
    fill.id = "bar-" + label;
    fill.style.background = colour(label);
    track.appendChild(fill);
    const value = document.createElement("div");
    value.className = "bar-value";
    value.id = "value-" + label;
    value.textContent = "–";
    bars.append(name, track, value);
  }
}

// An answer below the model's uncertain threshold is shown as a guess.
function shownLabel(result) {
  return result.uncertain ? result.label + "? (unsure)" : result.label;
}

function showProbabilities(result) {
  $("result-label").textContent = shownLabel(result);
  $("result-label").style.color = colour(result.label);
  $("result-confidence").textContent = Math.round(result.confidence * 100) + "%";
  for (const label of state.labels) {
    const p = result.probabilities[label] || 0;
    $("bar-" + label).style.width = (p * 100).toFixed(1) + "%";
    $("value-" + label).textContent = Math.round(p * 100) + "%";
    $("name-" + label).classList.toggle("best", label === result.label);
  }
}

function clearResult() {
  $("result-label").textContent = "—";
  $("result-label").style.color = "";
  $("result-confidence").textContent = "—";
  for (const label of state.labels) {
    $("bar-" + label).style.width = "0%";
    $("value-" + label).textContent = "–";
    $("name-" + label).classList.remove("best");
  }
  $("timings").textContent = "";
  showTimeline(null);
  drawWave(new Float32Array(0));
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - 60 * m).toFixed(1).padStart(4, "0")}`;
}

// A long recording comes back in speech segments: list them (times, label, confidence)
// under a legend and the waveform, and make the overall figure secondary.
function showTimeline(result) {
  const segments = result && result.segments;
  const on = Boolean(segments && segments.length);
  $("result").classList.toggle("segmented", on);
  $("timeline").hidden = !on;
  $("segments").hidden = !on;
  $("result-kind").textContent = on
    ? `overall (duration-weighted mean of ${segments.length} segments)` : "emotion";
  $("legend").innerHTML = "";
  $("segments").innerHTML = "";
  if (!on) return;
  const seconds = {};
  for (const s of segments) seconds[s.label] = (seconds[s.label] || 0) + (s.end - s.start);
  $("timeline-title").textContent = `Timeline: ${segments.length} speech segment` +
    (segments.length === 1 ? "" : "s");
  for (const label of state.labels.filter((l) => l in seconds)) {
    const item = document.createElement("span");
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(label);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    const total = document.createElement("span");
    total.className = "muted";
    total.textContent = `${seconds[label].toFixed(1)} s`;
    item.append(swatch, name, total);
    $("legend").appendChild(item);
  }
  for (const s of segments) {
    const li = document.createElement("li");
    const time = document.createElement("span");
    time.className = "seg-time";
    time.textContent = `${clock(s.start)} – ${clock(s.end)}`;
    const label = document.createElement("span");
    label.className = "seg-label";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(s.label);
    label.append(swatch, document.createTextNode(s.label));
    const conf = document.createElement("span");
    conf.className = "seg-conf";
    conf.textContent = Math.round(s.confidence * 100) + "%";
    li.append(time, label, conf);
    $("segments").appendChild(li);
  }
}

function addHistory(result, source) {
  const li = document.createElement("li");
  const now = new Date();
  const cells = [
    ["h-time", now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })],
    ["h-source", source],
    ["h-label", shownLabel(result)],
    ["h-conf", Math.round(result.confidence * 100) + "%"],
  ];
  for (const [cls, text] of cells) {
    const div = document.createElement("div");
    div.className = cls;
    if (cls === "h-label") {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colour(result.label);
      div.appendChild(swatch);
    }
    div.appendChild(document.createTextNode(text));
    li.appendChild(div);
  }
  $("history").prepend(li);
  $("history-empty").hidden = true;
}

// ------------------------------------------------------------------ waveform

// Seconds between labelled ticks: the smallest step giving at most 10 ticks.
function tickStep(duration) {
  const steps = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
  return steps.find((s) => duration / s <= 10) || 3600;
}

function drawWave(samples, segments = null, duration = null) {
  const canvas = $("wave");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth * dpr, full = canvas.clientHeight * dpr;
  canvas.width = w;
  canvas.height = full;
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, w, full);
  // With a known duration, the bottom strip is a time axis (seconds, or m:ss).
  const axis = duration ? 18 * dpr : 0;
  const h = full - axis;
  canvas.dataset.ticks = "";
  if (segments && duration) {
    for (const s of segments) {
      g.fillStyle = colour(s.label) + "55";
      g.fillRect((s.start / duration) * w, 0, ((s.end - s.start) / duration) * w, h);
    }
  }
  if (duration) {
    const step = tickStep(duration);
    const ticks = [];
    g.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--muted") || "#6b7385";
    g.font = `${11 * dpr}px system-ui, sans-serif`;
    g.textBaseline = "bottom";
    for (let t = 0; t <= duration + 1e-6; t += step) {
      const x = Math.round((t / duration) * (w - 1));
      g.fillRect(x, h, 1, 4 * dpr);
      const text = duration >= 60 ? clock(t).replace(/\.0$/, "") : `${t} s`;
      g.textAlign = t === 0 ? "left" : x > w - 30 * dpr ? "right" : "center";
      g.fillText(text, x, full);
      ticks.push(text);
    }
    canvas.dataset.ticks = ticks.join(",");
  }
  g.fillStyle = getComputedStyle(document.documentElement).getPropertyValue("--accent") || "#3b5bdb";
  const step = Math.max(1, Math.floor(samples.length / w));
  let peak = 1e-4;
  for (let i = 0; i < samples.length; i += 1) peak = Math.max(peak, Math.abs(samples[i]));
  for (let x = 0; x < w; x += 1) {
    let lo = 0, hi = 0;
    const from = Math.floor((x / w) * samples.length);
    for (let i = from; i < Math.min(samples.length, from + step); i += 1) {
      lo = Math.min(lo, samples[i]);
      hi = Math.max(hi, samples[i]);
    }
    const y0 = h / 2 - (hi / peak) * (h / 2 - 2), y1 = h / 2 - (lo / peak) * (h / 2 - 2);
    g.fillRect(x, y0, 1, Math.max(1, y1 - y0));
  }
}

async function drawBlob(blob, result) {
  try {
    const ctx = new (window.AudioContext || window.webkitAudioContext)();
    const audio = await ctx.decodeAudioData(await blob.arrayBuffer());
    drawWave(audio.getChannelData(0), result && result.segments, audio.duration);
    ctx.close();
  } catch (err) {
    // Some containers cannot be decoded by every browser; the prediction still stands.
  }
}

// ------------------------------------------------------------------ upload / predict

async function predictBlob(blob, filename, source) {
  setStatus("Recognising…");
  clearResult(); // a new input: the previous answer must not linger (above all after an error)
  const form = new FormData();
  form.append("file", blob, filename);
  const voice = state.voice;
  let response, body;
  try {
    const query = voice ? "?voice=" + encodeURIComponent(voice) : "";
    response = await fetch("/v1/predict" + query, { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    setStatus("Could not reach the server: " + err.message, "error");
    return;
  }
  if (voice && response.status === 404) {
    // The server forgot the voice (unused too long, or restarted): say so, answer anyway.
    setVoice(null);
    await predictBlob(blob, filename, source);
    const forgotten = "The server had forgotten your voice (unused for too long, or restarted), " +
      "so this answer is the standard model's; teach it again to use your voice.";
    $("teach-status").textContent = forgotten;
    setStatus($("status").textContent + " — " + forgotten, $("status").className.replace("status", "").trim());
    return;
  }
  if (response.status === 422 && (body.error || "").startsWith("no speech")) {
    setStatus(`${source}: no emotion — ${body.error}`, "error");
    return;
  }
  if (!response.ok) {
    setStatus("Error " + response.status + ": " + (body.error || response.statusText), "error");
    return;
  }
  showProbabilities(body);
  showTimeline(body);
  addHistory(body, body.voice ? source + " · you" : source);
  drawBlob(blob, body);
  const t = body.timings || {};
  $("timings").textContent = `${body.duration.toFixed(1)} s of audio · ` +
    `server time ${Math.round((t.total || 0) * 1000)} ms` +
    (body.segments ? ` · ${body.segments.length} speech segment(s)` : "");
  const overall = `${shownLabel(body)} (${Math.round(body.confidence * 100)}%)`;
  setStatus(body.segments && body.segments.length
    ? `${source}: ${body.segments.length} speech segments, overall ${overall}`
    : `${source}: ${overall}`);
}

// ------------------------------------------------------------------ record

function pickMime() {
  const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
  if (!window.MediaRecorder) return null;
  return types.find((t) => MediaRecorder.isTypeSupported(t)) || "";
}

// Record the microphone until stop(): onTick(seconds) ten times a second, then
// onClip(blob, extension). Throws (with a sentence to show) when there is no microphone.
async function startCapture(onTick, onClip) {
  const mime = pickMime();
  if (mime === null) throw new Error("This browser cannot record (no MediaRecorder); upload a file instead.");
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (err) {
    throw new Error("No microphone: " + err.message);
  }
  const recorder = new MediaRecorder(media, mime ? { mimeType: mime } : undefined);
  const chunks = [];
  recorder.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
  recorder.onstop = () => {
    media.getTracks().forEach((t) => t.stop());
    const type = recorder.mimeType || "audio/webm";
    const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    onClip(new Blob(chunks, { type }), ext);
  };
  recorder.start(250);
  const started = Date.now();
  const timer = setInterval(() => onTick((Date.now() - started) / 1000), 100);
  return {
    stop() {
      clearInterval(timer);
      if (recorder.state !== "inactive") recorder.stop();
    },
  };
}

async function startRecording() {
  try {
    state.recorder = await startCapture((s) => {
      setStatus(`Recording… ${s.toFixed(1)} s (click Stop when done)`, "speech");
      if (s >= MAX_RECORD_SECONDS) stopRecording();
    }, (blob, ext) => predictBlob(blob, "recording." + ext, "recording"));
  } catch (err) {
    setStatus(err.message, "error");
    return;
  }
  const button = $("record");
  button.classList.add("recording");
  button.querySelector(".text").textContent = "Stop";
  $("live").disabled = true;
}

function stopRecording() {
  const button = $("record");
  button.classList.remove("recording");
  button.querySelector(".text").textContent = "Record";
  $("live").disabled = false;
  if (state.recorder) state.recorder.stop();
  state.recorder = null;
}

// ------------------------------------------------------------------ teach it my voice

function setVoice(voice) {
  state.voice = voice;
  $("voice-on").hidden = !voice;
}

function clipCount(label) {
  return (teach.clips[label] || []).length;
}

function showClips() {
  for (const label of state.labels) {
    const n = clipCount(label);
    const count = $("teach-count-" + label);
    count.textContent = `${n} / ${teach.min}`;
    count.classList.toggle("done", n >= teach.min);
    $("teach-clear-" + label).hidden = n === 0;
  }
  const missing = state.labels.filter((l) => clipCount(l) < teach.min);
  $("teach-send").disabled = missing.length > 0 || Boolean(teach.capture);
  $("teach-send").title = missing.length ? "Still needed: " + missing.join(", ") : "";
}

function addClip(label, blob, filename) {
  const clips = (teach.clips[label] = teach.clips[label] || []);
  if (clips.length >= teach.max) {
    $("teach-status").textContent = `At most ${teach.max} clips of ${label}.`;
    return;
  }
  clips.push({ blob, filename });
  $("teach-status").textContent = `${label}: clip ${clips.length} added.`;
  showClips();
}

async function toggleTeachRecording(label) {
  const button = $("teach-rec-" + label);
  if (teach.capture) {
    const same = teach.capture.label === label;
    teach.capture.stop();
    if (same) return;
  }
  try {
    const capture = await startCapture((s) => {
      $("teach-status").textContent = `Recording ${label}… ${s.toFixed(1)} s (click Stop when done)`;
      if (s >= MAX_CLIP_SECONDS) capture.stop();
    }, (blob, ext) => addClip(label, blob, `${label}-${clipCount(label) + 1}.${ext}`));
    const stop = capture.stop;
    capture.stop = () => {
      stop();
      teach.capture = null;
      button.classList.remove("recording");
      button.textContent = "Record";
      showClips();
    };
    capture.label = label;
    teach.capture = capture;
  } catch (err) {
    $("teach-status").textContent = err.message;
    return;
  }
  button.classList.add("recording");
  button.textContent = "Stop";
  showClips();
}

function buildTeach(voices) {
  teach.min = voices.min_clips;
  teach.max = voices.max_clips;
  $("teach-min").textContent = String(teach.min);
  $("teach-ttl").textContent = voices.ttl_seconds >= 3600
    ? `${Math.round(voices.ttl_seconds / 3600)} h` : `${Math.round(voices.ttl_seconds / 60)} min`;
  const list = $("teach-list");
  list.innerHTML = "";
  for (const label of state.labels) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "teach-name";
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = colour(label);
    name.append(swatch, document.createTextNode(label));
    const hint = document.createElement("span");
    hint.className = "muted small teach-hint";
    hint.textContent = "say it " + (ACT[label] || `as if you felt ${label}`);
    const rec = document.createElement("button");
    rec.type = "button";
    rec.id = "teach-rec-" + label;
    rec.textContent = "Record";
    rec.setAttribute("aria-label", `Record a clip of ${label} (click again to stop)`);
    rec.addEventListener("click", () => toggleTeachRecording(label));
    const add = document.createElement("label");
    add.className = "button";
    add.textContent = "Add files";
    const input = document.createElement("input");
    input.type = "file";
    input.multiple = true;
    input.accept = "audio/*,video/webm,.wav,.flac,.mp3,.ogg,.m4a,.webm";
    input.id = "teach-file-" + label;
    input.setAttribute("aria-label", `Audio files of ${label}`);
    input.addEventListener("change", (e) => {
      for (const file of e.target.files) addClip(label, file, file.name);
      e.target.value = "";
    });
    add.appendChild(input);
    const count = document.createElement("span");
    count.className = "teach-count";
    count.id = "teach-count-" + label;
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "link";
    clear.id = "teach-clear-" + label;
    clear.textContent = "clear";
    clear.setAttribute("aria-label", `Remove the clips of ${label}`);
    clear.addEventListener("click", () => { teach.clips[label] = []; showClips(); });
    li.append(name, hint, rec, add, count, clear);
    list.appendChild(li);
  }
  showClips();
  $("teach").hidden = false;
}

async function sendVoice() {
  const form = new FormData();
  for (const label of state.labels) {
    for (const clip of teach.clips[label] || []) form.append(label, clip.blob, clip.filename);
  }
  $("teach-send").disabled = true;
  $("teach-status").textContent = "Learning your voice…";
  let response, body;
  try {
    response = await fetch("/v1/voices", { method: "POST", body: form });
    body = await response.json();
  } catch (err) {
    $("teach-status").textContent = "Could not reach the server: " + err.message;
    showClips();
    return;
  }
  if (!response.ok) {
    $("teach-status").textContent = `Not learned (error ${response.status}): ${body.error}`;
    showClips();
    return;
  }
  if (state.voice) forgetVoice(false); // the old one is of no use now
  setVoice(body.voice);
  teach.clips = {}; // the page keeps no recordings once they are learned
  showClips();
  $("teach-status").textContent = "Learned: Record, Live and Upload now answer with your voice.";
  $("teach-open").open = false; // the panel's work is done: the answers come next
  setStatus("Learned your voice: Record, Live and Upload now answer with it.");
}

async function forgetVoice(say = true) {
  const voice = state.voice;
  setVoice(null);
  if (!voice) return;
  try {
    await fetch("/v1/voices/" + encodeURIComponent(voice), { method: "DELETE" });
  } catch (err) {
    // The server is gone, and the voice with it.
  }
  if (say) {
    $("teach-status").textContent = "Forgotten: answers use the standard model again.";
    setStatus("Your voice is forgotten; answers use the standard model.");
  }
}

// ------------------------------------------------------------------ live

// The AudioWorklet processor, loaded from a Blob so the page stays three files.
const TAP = `class Tap extends AudioWorkletProcessor {
  process(inputs) { const ch = inputs[0][0]; if (ch) this.port.postMessage(ch.slice(0)); return true; }
}
registerProcessor("ser-tap", Tap);`;

async function startLive() {
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    setStatus("No microphone: " + err.message, "error");
    return;
  }
  clearResult();
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  const live = { media, ctx, ws: null, pending: [], wave: new Float32Array(ctx.sampleRate * 4), sent: null };
  state.live = live;

  const onPcm = (block) => {
    live.pending.push(block);
    live.wave.copyWithin(0, block.length);
    live.wave.set(block, live.wave.length - block.length);
  };
  const source = ctx.createMediaStreamSource(media);
  const mute = ctx.createGain();
  mute.gain.value = 0; // processing nodes must reach the destination to run; keep it silent
  mute.connect(ctx.destination);
  if (ctx.audioWorklet) {
    const url = URL.createObjectURL(new Blob([TAP], { type: "application/javascript" }));
    await ctx.audioWorklet.addModule(url);
    const node = new AudioWorkletNode(ctx, "ser-tap");
    node.port.onmessage = (e) => onPcm(e.data);
    source.connect(node).connect(mute);
  } else {
    const node = ctx.createScriptProcessor(4096, 1, 1);
    node.onaudioprocess = (e) => onPcm(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(node).connect(mute);
  }

  // Open the socket only now: its handlers must be attached before any await can let
  // the "open" event fire unheard.
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/stream`);
  ws.binaryType = "arraybuffer";
  live.ws = ws;
  // The PCM format is stated, never guessed: float32 little-endian, as Web Audio gives it.
  const hello = { sample_rate: ctx.sampleRate, format: "f32le" };
  if (state.voice) hello.voice = state.voice;
  ws.onopen = () => ws.send(JSON.stringify(hello));
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "ready") {
      setStatus("Live: listening…");
      live.sent = setInterval(() => {
        if (ws.readyState !== WebSocket.OPEN || !live.pending.length) return;
        const n = live.pending.reduce((a, b) => a + b.length, 0);
        const out = new Float32Array(n);
        let at = 0;
        for (const b of live.pending) { out.set(b, at); at += b.length; }
        live.pending = [];
        // Frames stay under the server's limit even after a throttled (background) tab
        // has piled up seconds of audio.
        const most = Math.floor(msg.max_frame_bytes / 4);
        for (let i = 0; i < n; i += most) ws.send(out.subarray(i, i + most).slice().buffer);
        drawWave(live.wave);
      }, SEND_EVERY_MS);
    } else if (msg.type === "update") {
      if (msg.label) showProbabilities(msg);
      setStatus(msg.speech ? "Live: speech" + (msg.label ? ` — ${shownLabel(msg)}` : "") : "Live: listening…",
        msg.speech ? "speech" : "");
    } else if (msg.type === "utterance" && msg.label) {
      showProbabilities(msg);
      addHistory(msg, `live ${(msg.end - msg.start).toFixed(1)} s`);
    } else if (msg.type === "utterance") {
      // The speech rule: too little speech in it for an emotion.
      setStatus(`Live: ${(msg.end - msg.start).toFixed(1)} s without enough speech — no emotion`);
    } else if (msg.type === "error") {
      setStatus("Server: " + msg.error, "error");
    }
  };
  ws.onclose = () => { if (state.live === live) stopLive("Live stream closed."); };
  ws.onerror = () => setStatus("Live stream error (is the server running?)", "error");

  const button = $("live");
  button.classList.add("on");
  button.querySelector(".text").textContent = "Stop live";
  $("record").disabled = true;
}

function stopLive(message = "Live stopped.") {
  const live = state.live;
  state.live = null;
  if (live) {
    clearInterval(live.sent);
    live.media.getTracks().forEach((t) => t.stop());
    live.ctx.close();
    if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify({ type: "end" }));
  }
  const button = $("live");
  button.classList.remove("on");
  button.querySelector(".text").textContent = "Live";
  $("record").disabled = false;
  setStatus(message);
}

// ------------------------------------------------------------------ start-up

async function init() {
  let model = null;
  try {
    model = await (await fetch("/v1/model")).json();
    state.labels = model.labels;
    const uar = model.metrics && (model.metrics.uar ?? (model.metrics.test && model.metrics.test.uar));
    $("model-info").textContent = `model ${model.name || "?"} · ${model.labels.length} emotions` +
      (typeof uar === "number" ? ` · UAR ${(uar * 100).toFixed(0)}%` : "") +
      (model.licence ? ` · licence ${model.licence}` : "");
  } catch (err) {
    $("model-info").textContent = "Could not load the model description.";
    state.labels = Object.keys(COLOURS);
  }
  buildBars();
  drawWave(new Float32Array(0));
  if (model && model.voices && model.voices.available) buildTeach(model.voices);
  $("teach-send").addEventListener("click", sendVoice);
  $("forget").addEventListener("click", () => forgetVoice());
  // The page holds the only copy of the voice's id: leaving it forgets the voice on the server.
  window.addEventListener("pagehide", () => {
    if (state.voice) {
      fetch("/v1/voices/" + encodeURIComponent(state.voice), { method: "DELETE", keepalive: true });
    }
  });
  $("record").addEventListener("click", () => (state.recorder ? stopRecording() : startRecording()));
  $("live").addEventListener("click", () => (state.live ? stopLive() : startLive()));
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    if (file) predictBlob(file, file.name, "file");
    e.target.value = "";
  });
  $("clear").addEventListener("click", () => {
    $("history").innerHTML = "";
    $("history-empty").hidden = false;
  });
  document.body.dataset.ready = "1";
}

init();
