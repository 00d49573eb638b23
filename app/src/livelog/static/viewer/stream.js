// One run's lines, each once and in order: first what the API has stored (paged), then the live stream from the
// last seq shown, resumed from there after every reconnect.
//
// Delivery rule (as livelog's LogSubscriber): a run's seqs are 1, 2, 3, ...; a line beyond the next one, or a
// subscribe ack whose last_seq is beyond the last shown, means lines are missing: they are fetched from the API
// before anything newer is shown; what cannot be fetched is reported as a gap. Lines, acks and fetches are handled
// one at a time, in arrival order.
export const PAGE = 5000;

export class RunStream {
  constructor({api, socket, runId, onLines, onNotice, onTrimmed, onResumed}) {
    Object.assign(this, {api, socket, runId, onLines, onNotice, onTrimmed, onResumed});
    this.last = 0;
    this.loaded = false;
    this.closed = false;
    this.work = Promise.resolve();
    this.lastAtDrop = null;
  }

  inOrder(task) {
    this.work = this.work.then(() => (this.closed ? undefined : task())).catch((error) => {
      console.error(error);
      this.onNotice(`error: ${error.message}`);
    });
    return this.work;
  }

  // the stored history, then the live stream (when connected; else at the next connect)
  open() {
    return this.inOrder(async () => {
      await this.fill(Infinity, true);
      this.loaded = true;
      if (this.socket.connected) this.subscribe();
    });
  }

  // on every (re)connect of the socket
  connected() {
    if (this.loaded) this.inOrder(async () => this.subscribe());
  }

  disconnected() {
    if (this.lastAtDrop === null) this.lastAtDrop = this.last;
  }

  subscribe() {
    this.socket.emit("subscribe", {run_id: this.runId, after_seq: this.last, batch: true}, (ack) => {
      this.inOrder(() => this.acknowledged(ack));
    });
  }

  async acknowledged(ack) {
    if (!ack || !ack.ok) {
      this.onNotice(`live lines refused: ${ack ? ack.error : "no answer"}`);
      return;
    }
    const replay = (ack.runs || {})[this.runId];
    if (replay && replay.last_seq > this.last) await this.fill(replay.last_seq);
    if (this.lastAtDrop !== null) {
      // what the run logged while the connection was down may not have reached this Socket.IO server yet (its
      // broadcaster retries): the API has it, so catch up from there now rather than at the next live line
      await this.fill(Infinity, true);
      this.onResumed(this.last - this.lastAtDrop);
      this.lastAtDrop = null;
    }
  }

  // the run has ended with `total` lines: any the live stream has not brought (lost on the way to this Socket.IO
  // server, or still on it) are read from the API now, or reported, rather than missed without a word
  ended(total) {
    if (this.loaded && total > this.last) this.inOrder(() => this.fill(total));
  }

  received(lines) {
    this.inOrder(async () => {
      const fresh = [];
      for (const line of lines) {
        if (line.run_id !== this.runId || line.seq <= this.last) continue;  // another run's, or shown already
        if (line.seq > this.last + 1) {
          if (fresh.length) this.accept(fresh.splice(0));
          await this.fill(line.seq - 1);
        }
        if (line.seq === this.last + 1) {
          fresh.push(line);
          this.last = line.seq;
        }
      }
      if (fresh.length) this.accept(fresh);
    });
  }

  accept(lines) {
    this.last = lines[lines.length - 1].seq;
    this.onLines(lines);
  }

  // lines after `last` up to `upTo` from the API, page by page; `stored`: whatever the API has (upTo is Infinity),
  // where the first page may show that retention removed the run's oldest lines
  async fill(upTo, stored = false) {
    while (this.last < upTo && !this.closed) {
      const limit = upTo === Infinity ? PAGE : Math.min(PAGE, upTo - this.last);
      const page = await this.api.lines(this.runId, this.last, limit);
      if (this.closed) return;
      if (stored && this.last === 0 && page.length && page[0].seq > 1) this.onTrimmed(page[0].seq - 1);
      const lines = page.filter((line) => line.seq <= upTo);
      if (!lines.length) break;
      // holes in what the API has (lines the store left out when its queue was full) are said, not skipped
      let before = stored && this.last === 0 ? lines[0].seq - 1 : this.last;
      for (const line of lines) {
        if (line.seq !== before + 1) this.onNotice(`lines ${before + 1}–${line.seq - 1} are not stored`);
        before = line.seq;
      }
      this.accept(lines);
      if (page.length < limit) break;
    }
    if (!stored && this.last < upTo) {
      this.onNotice(`lines ${this.last + 1}–${upTo} could not be read from the API`);
      this.last = upTo;
    }
  }

  close() {
    this.closed = true;
    if (this.socket.connected) this.socket.emit("unsubscribe", {run_id: this.runId, batch: true});
  }
}
