// aribot listen-in: plays a live call in the browser (plugins/ui_nicegui/listen.py).
// The socket sends one JSON message ({format: "ulaw"|"alaw", rate: 8000, channels: 2}), then
// binary chunks of interleaved G.711 bytes: left = caller, right = AI. Each chunk becomes an
// 8000 Hz stereo AudioBuffer scheduled back to back, JITTER_S ahead of now; a queue that falls
// more than MAX_AHEAD_S behind real time is dropped and restarted, so the operator hears the
// call less than half a second late. Counters for tests live in window.aribotListen. The call
// page's status label (.aribot-listen-status) shows the state; once it is gone (the operator went
// to another page), listening stops.
(() => {
  const JITTER_S = 0.12;
  const MAX_AHEAD_S = 0.45;

  function ulaw(u) {
    u = ~u & 0xff;
    const exponent = (u >> 4) & 0x07;
    const magnitude = ((((u & 0x0f) << 3) + 0x84) << exponent) - 0x84;
    return u & 0x80 ? -magnitude : magnitude;
  }

  function alaw(a) {
    a ^= 0x55;
    let t = (a & 0x0f) << 4;
    const segment = (a & 0x70) >> 4;
    if (segment === 0) t += 8;
    else if (segment === 1) t += 0x108;
    else t = (t + 0x108) << (segment - 1);
    return a & 0x80 ? t : -t;
  }

  const TABLES = {};
  for (const [name, decode] of [["ulaw", ulaw], ["alaw", alaw]]) {
    const table = new Int16Array(256);
    for (let i = 0; i < 256; i++) table[i] = decode(i);
    TABLES[name] = table;
  }

  let socket = null;
  let nextTime = 0;
  const STATUS = ".aribot-listen-status";

  function status(text) {
    document.querySelectorAll(STATUS).forEach((element) => { element.textContent = text; });
  }

  function counters() {
    return {state: "idle", format: "", rate: 0, bytes: 0, frames: 0, samples: 0, sumAbs: [0, 0],
            latencyMs: 0, maxLatencyMs: 0, resyncs: 0, contextState: "", contextTime: 0, closeCode: null};
  }

  function play(ctx, table, bytes, stats) {
    const n = bytes.length >> 1;
    if (n === 0) return;
    const buffer = ctx.createBuffer(2, n, 8000);
    const left = buffer.getChannelData(0);
    const right = buffer.getChannelData(1);
    let sumLeft = 0, sumRight = 0;
    for (let i = 0; i < n; i++) {
      const l = table[bytes[2 * i]], r = table[bytes[2 * i + 1]];
      left[i] = l / 32768;
      right[i] = r / 32768;
      sumLeft += Math.abs(l);
      sumRight += Math.abs(r);
    }
    stats.sumAbs[0] += sumLeft;
    stats.sumAbs[1] += sumRight;
    stats.samples += n;
    const now = ctx.currentTime;
    if (nextTime < now || nextTime - now > MAX_AHEAD_S) {
      if (nextTime !== 0) stats.resyncs += 1;
      nextTime = now + JITTER_S;
    }
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    source.start(nextTime);
    stats.latencyMs = Math.round((nextTime - now) * 1000);
    stats.maxLatencyMs = Math.max(stats.maxLatencyMs, stats.latencyMs);
    stats.contextState = ctx.state;
    stats.contextTime = now;
    nextTime += buffer.duration;
  }

  window.aribotListenStart = (path) => {
    window.aribotListenStop();
    const C = window.AudioContext || window.webkitAudioContext;
    const ctx = window.aribotAudio || (window.aribotAudio = new C());
    ctx.resume();
    const stats = window.aribotListen = counters();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = socket = new WebSocket(scheme + "//" + location.host + path);
    ws.binaryType = "arraybuffer";
    let table = null;
    nextTime = 0;
    stats.state = "connecting";
    status("connecting…");
    ws.onmessage = (message) => {
      if (document.querySelector(STATUS) === null) {  // the call page is gone
        window.aribotListenStop();
        return;
      }
      if (typeof message.data === "string") {
        const header = JSON.parse(message.data);
        table = TABLES[header.format];
        stats.format = header.format;
        stats.rate = header.rate;
        stats.state = "listening";
        status("listening: caller left, AI right");
        return;
      }
      const bytes = new Uint8Array(message.data);
      stats.bytes += bytes.length;
      stats.frames += 1;
      if (table !== null) play(ctx, table, bytes, stats);
    };
    ws.onclose = (event) => {
      if (stats.state !== "listening") status("could not listen (refused or disconnected)");
      else status(event.reason === "call ended" ? "stopped: the call ended" : "stopped");
      stats.state = "closed";
      stats.closeCode = event.code;
      if (socket === ws) socket = null;
    };
  };

  window.aribotListenStop = () => {
    if (socket !== null) {
      socket.close(1000, "stop");
      socket = null;
    }
  };
})();
