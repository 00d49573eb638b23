// The clients of bench/fanout.py with --client js: the official Socket.IO client (socket.io-client, the one the
// viewer page vendors, from app/viewer/node_modules) on Node, run in the deployed host's network namespace
// (nsenter), so they reach its nginx on loopback as fanout_clients.py does, over many loopback source addresses.
// Same arguments, same `ready` line and the same JSON summary as fanout_clients.py, after which the clients all
// leave at once on a line on stdin (or its end); a browser's client, not python-socketio's, which spends several
// times the CPU per message.
//
//   node fanout_clients.mjs --url https://127.0.0.1 --token T --run-id R --lines 20 --clients 5000 --processes 4
import { fork } from "node:child_process";
import { on, once } from "node:events";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";

const require = createRequire(new URL("../app/viewer/package.json", import.meta.url));
const { io } = require("socket.io-client");

const PER_ADDRESS = 15; // below nginx's livelog_nginx_connections_per_client (20)
const IN_FLIGHT = 20; // handshakes one process has going at once (nginx lets a client address burst 20)
const CONNECT_ATTEMPTS = 3;

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "https://127.0.0.1" },
    token: { type: "string" },
    "run-id": { type: "string" },
    lines: { type: "string" },
    clients: { type: "string", default: "1000" },
    processes: { type: "string", default: "4" },
    timeout: { type: "string", default: "120" },
  },
});
const lines = Number(args.lines);

// the third byte first: nginx's ip_hash (several Socket.IO nodes) spreads clients by their first three bytes
const sourceAddress = (n) => `127.0.${(n % 250) + 1}.${Math.floor(n / 250) + 2}`;

class Gate {
  constructor(size) {
    this.free = size;
    this.waiting = [];
  }
  async run(work) {
    if (this.free > 0) this.free -= 1;
    else await new Promise((resolve) => this.waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    }
  }
}

function handshake(n) {
  const viewer = { seqs: new Set(), latencies: [], disconnects: 0, retries: 0 };
  const socket = io(args.url, {
    auth: { token: args.token },
    transports: ["websocket"],
    reconnection: false,
    rejectUnauthorized: false, // nginx on loopback, with its own certificate
    localAddress: sourceAddress(Math.floor(n / PER_ADDRESS)),
    timeout: 60_000,
  });
  socket.on("logs", (batch) => {
    const now = Date.now() / 1000;
    for (const line of batch) {
      viewer.latencies.push(now - line.ts);
      viewer.seqs.add(line.seq);
    }
    if (viewer.seqs.size >= lines && viewer.done) viewer.done();
  });
  return new Promise((resolve, reject) => {
    socket.once("connect", () => {
      socket.on("disconnect", () => (viewer.disconnects += 1));
      resolve({ socket, viewer });
    });
    socket.once("connect_error", (error) => {
      socket.close();
      reject(error);
    });
  });
}

async function connect(n, gate) {
  for (let attempt = 0; ; attempt++) {
    try {
      const client = await gate.run(() => handshake(n));
      const ack = await client.socket.timeout(60_000).emitWithAck("subscribe", {
        run_id: args["run-id"],
        after_seq: 0,
        batch: true,
      });
      if (!ack.ok) throw new Error(`subscribe refused: ${JSON.stringify(ack)}`);
      client.viewer.retries = attempt;
      return client;
    } catch (error) {
      if (attempt === CONNECT_ATTEMPTS - 1) throw error;
      await sleep(1000 * (1 + attempt)); // a viewer's browser retries a refused handshake too
    }
  }
}

async function worker(first, count) {
  const gate = new Gate(IN_FLIGHT);
  const results = await Promise.allSettled(Array.from({ length: count }, (_, i) => connect(first + i, gate)));
  const connected = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
  const failures = {};
  for (const r of results.filter((r) => r.status === "rejected")) {
    const kind = `${r.reason?.name ?? "Error"}: ${String(r.reason?.message ?? r.reason).slice(0, 80)}`;
    failures[kind] = (failures[kind] ?? 0) + 1;
  }
  process.send({ connected: connected.length });
  const cpuBefore = process.cpuUsage();
  const done = connected.map(
    ({ viewer }) => new Promise((resolve) => (viewer.seqs.size >= lines ? resolve() : (viewer.done = resolve))),
  );
  // unref'd: once every viewer is done, the timer does not keep the worker alive
  await Promise.race([Promise.all(done), sleep(Number(args.timeout) * 1000, undefined, { ref: false })]);
  const cpu = process.cpuUsage(cpuBefore);
  const viewers = connected.map(({ viewer }) => viewer);
  const report = {
    delivered: viewers.reduce((sum, v) => sum + v.seqs.size, 0),
    disconnects: viewers.reduce((sum, v) => sum + v.disconnects, 0),
    connect_retries: viewers.reduce((sum, v) => sum + v.retries, 0),
    failures,
    latencies: viewers.flatMap((v) => v.latencies),
    cpu_s: (cpu.user + cpu.system) / 1e6,
  };
  process.send(report);
  // leave when main says so (it has every report by then), or when main is gone
  await Promise.race([once(process, "message"), once(process, "disconnect")]);
  for (const { socket } of connected) socket.close();
  if (process.connected) process.disconnect();
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

async function main() {
  const clients = Number(args.clients);
  const share = Math.ceil(clients / Number(args.processes));
  const started = performance.now();
  const workers = [];
  const children = [];
  for (let first = 0; first < clients; first += share) {
    const child = fork(new URL(import.meta.url).pathname, [...process.argv.slice(2), "worker", first, Math.min(share, clients - first)]);
    const messages = on(child, "message"); // buffers what comes before it is read
    workers.push(async () => (await messages.next()).value[0]);
    children.push(child);
    // a worker that fails ends the run: the others then leave (their channel to this process closes)
    child.on("exit", (code, signal) => (code || signal) && process.exit(1));
  }
  const ready = (await Promise.all(workers.map((next) => next()))).reduce((sum, m) => sum + m.connected, 0);
  console.log(JSON.stringify({ ready, connect_s: Math.round((performance.now() - started) / 100) / 10 }));
  const reports = await Promise.all(workers.map((next) => next()));
  const latencies = reports.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const failures = {};
  for (const r of reports) for (const [kind, n] of Object.entries(r.failures)) failures[kind] = (failures[kind] ?? 0) + n;
  const ms = (s) => (s === undefined ? null : Math.round(s * 100_000) / 100);
  console.log(
    JSON.stringify({
      clients,
      connected: ready,
      expected: clients * lines,
      delivered: reports.reduce((sum, r) => sum + r.delivered, 0),
      disconnects: reports.reduce((sum, r) => sum + r.disconnects, 0),
      connect_retries: reports.reduce((sum, r) => sum + r.connect_retries, 0),
      connect_failures: failures,
      clients_cpu_s: Math.round(reports.reduce((sum, r) => sum + r.cpu_s, 0) * 100) / 100,
      p50_ms: latencies.length ? ms(quantile(latencies, 0.5)) : null,
      p99_ms: latencies.length ? ms(quantile(latencies, 0.99)) : null,
      max_ms: latencies.length ? ms(latencies[latencies.length - 1]) : null,
    }),
  );
  await Promise.race([once(process.stdin, "data"), once(process.stdin, "end")]);
  process.stdin.destroy();
  for (const child of children) child.send("leave");
}

if (positionals[0] === "worker") await worker(Number(positionals[1]), Number(positionals[2]));
else await main();
