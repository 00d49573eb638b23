// A run's log on screen: windowed (only the rows in and near the viewport exist in the DOM, so 100,000 lines scroll
// like 100), batched (lines that arrive between two frames are added and drawn once, at the next animation frame),
// with follow/pause, search over every line (not only the rows drawn), a filter and a level floor.
import {renderAnsi, stripAnsi} from "./ansi.js";

const LEVELS = {DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50};
const OVERSCAN = 30;  // rows drawn above and below the viewport

function clock(seconds) {
  return new Date(seconds * 1000).toISOString().slice(11, 23);
}

function sinceStart(seconds) {
  const ms = Math.max(0, Math.round(seconds * 1000));
  const minutes = Math.floor(ms / 60000), rest = ms % 60000;
  return `+${String(minutes).padStart(2, "0")}:${(rest / 1000).toFixed(3).padStart(6, "0")}`;
}

export class LogView {
  constructor({scroller, space, rows, runId, started, onFollow, onNewLines, onMatches}) {
    Object.assign(this, {scroller, space, rows, runId, started, onFollow, onNewLines, onMatches});
    this.lines = [];        // every line of the run: {seq, ts, level, message, plain}
    this.view = null;       // indices into lines of what is shown; null: every line
    this.matches = [];      // indices into lines of the search's matches (within the level floor)
    this.current = -1;      // which match is the current one
    this.query = "";
    this.filterOnly = false;
    this.floor = 0;
    this.follow = true;
    this.unseen = 0;        // lines that arrived while paused
    this.relative = false;
    this.wrap = false;
    this.target = null;     // the seq of a permalink, highlighted
    this.pending = [];
    this.frame = 0;
    this.rowHeight = 0;
    this.setTop = 0;        // where this code last scrolled to: a scroll above it is the reader's
    this.drawn = {first: -1, last: -1, version: -1};
    this.version = 0;
    this.painted = false;
    this.onScroll = () => this.scrolled();
    scroller.addEventListener("scroll", this.onScroll, {passive: true});
    this.resized = new ResizeObserver(() => this.schedule());
    this.resized.observe(scroller);
  }

  // another run opens in the same elements: this view lets go of them
  destroy() {
    this.destroyed = true;
    cancelAnimationFrame(this.frame);
    this.scroller.removeEventListener("scroll", this.onScroll);
    this.resized.disconnect();
  }

  // -- data ------------------------------------------------------------------------------------------------------

  add(lines) {
    for (const line of lines) this.pending.push(line);
    this.schedule();
  }

  schedule() {
    if (!this.frame && !this.destroyed) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    if (this.pending.length) {
      const start = this.lines.length, added = this.pending;
      this.pending = [];
      for (const line of added) {
        line.plain = stripAnsi(line.message);
        this.lines.push(line);
      }
      for (let i = start; i < this.lines.length; i++) {
        const line = this.lines[i];
        if (this.view !== null && this.shows(line)) this.view.push(i);
        if (this.isMatch(line)) this.matches.push(i);
      }
      if (this.query) this.onMatches(this.current, this.matches.length);
      if (!this.follow) {
        this.unseen += added.length;
        this.onNewLines(this.unseen);
      }
      this.version++;
    }
    this.draw();
  }

  levelOk(line) {
    return (LEVELS[line.level] || 0) >= this.floor;
  }

  isMatch(line) {
    return this.query !== "" && this.levelOk(line) && line.plain.toLowerCase().includes(this.query);
  }

  shows(line) {
    return this.levelOk(line) && (!this.filterOnly || !this.query || line.plain.toLowerCase().includes(this.query));
  }

  rebuild() {
    const everything = this.floor === 0 && (!this.filterOnly || !this.query);
    this.view = everything ? null : [];
    this.matches = [];
    this.lines.forEach((line, i) => {
      if (!everything && this.shows(line)) this.view.push(i);
      if (this.isMatch(line)) this.matches.push(i);
    });
    this.current = this.matches.length ? Math.min(this.current, this.matches.length - 1) : -1;
    this.onMatches(this.current, this.matches.length);
    this.version++;
    this.schedule();
  }

  get count() {
    return this.view === null ? this.lines.length : this.view.length;
  }

  lineAt(position) {
    return this.lines[this.view === null ? position : this.view[position]];
  }

  positionOf(index) {  // where line `index` is in the view; -1 when the view hides it
    if (this.view === null) return index;
    let low = 0, high = this.view.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (this.view[middle] === index) return middle;
      if (this.view[middle] < index) low = middle + 1; else high = middle - 1;
    }
    return -1;
  }

  indexOfSeq(seq) {  // lines are in seq order: a binary search
    let low = 0, high = this.lines.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1, found = this.lines[middle].seq;
      if (found === seq) return middle;
      if (found < seq) low = middle + 1; else high = middle - 1;
    }
    return -1;
  }

  // -- settings --------------------------------------------------------------------------------------------------

  search(text, filterOnly) {
    this.query = text.trim().toLowerCase();
    this.filterOnly = filterOnly;
    this.current = -1;
    this.rebuild();
  }

  setFloor(level) {
    this.floor = LEVELS[level] || 0;
    this.rebuild();
  }

  setRelative(relative) {
    this.relative = relative;
    this.version++;
    this.schedule();
  }

  setWrap(wrap) {
    this.wrap = wrap;
    this.scroller.classList.toggle("wrap", wrap);
    this.rowHeight = 0;
    this.version++;
    this.schedule();
  }

  // -- moving around ---------------------------------------------------------------------------------------------

  setFollow(follow) {
    this.follow = follow;
    if (follow) {
      this.unseen = 0;
      this.onNewLines(0);
    }
    this.onFollow(follow);
    this.schedule();
  }

  top() {
    this.setFollow(false);
    this.scrollTo(0);
  }

  step(direction) {  // to the next (1) or previous (-1) match
    if (!this.matches.length) return;
    this.current = (this.current + direction + this.matches.length) % this.matches.length;
    this.onMatches(this.current, this.matches.length);
    this.reveal(this.matches[this.current]);
  }

  goToSeq(seq) {
    const index = this.indexOfSeq(seq);
    if (index < 0) return false;
    this.target = seq;
    this.reveal(index);
    return true;
  }

  reveal(index) {  // scroll line `index` to the middle of the viewport, and stop following
    let position = this.positionOf(index);
    if (position < 0) {  // hidden by the filter or the level floor: show every line
      this.floor = 0;
      this.filterOnly = false;
      this.rebuild();
      position = index;
    }
    this.setFollow(false);
    this.measure();
    this.scrollTo(position * this.rowHeight - this.scroller.clientHeight / 2 + this.rowHeight / 2);
    this.version++;
    this.schedule();
  }

  scrollTo(top) {
    this.flushSpace();
    this.scroller.scrollTop = Math.max(0, top);
    this.setTop = this.scroller.scrollTop;
    this.schedule();
  }

  scrolled() {
    const {scrollTop, clientHeight, scrollHeight} = this.scroller;
    // the reader scrolled up; not the browser, clamping the position when the content got shorter (wrapped rows)
    if (this.follow && scrollTop < this.setTop - 4 && scrollTop + clientHeight < scrollHeight - 4) this.setFollow(false);
    this.setTop = Math.min(this.setTop, this.scroller.scrollTop);
    this.schedule();
  }

  // -- drawing ---------------------------------------------------------------------------------------------------

  measure() {
    if (this.rowHeight) return;
    const probe = this.makeRow({seq: 1, ts: 0, level: "INFO", message: "x", plain: "x"});
    this.rows.append(probe);
    this.rowHeight = probe.getBoundingClientRect().height || 20;
    probe.remove();
  }

  flushSpace() {
    this.measure();
    this.space.style.height = `${this.count * this.rowHeight}px`;
  }

  draw() {
    this.flushSpace();
    if (this.follow) {
      this.scroller.scrollTop = this.scroller.scrollHeight;
      this.setTop = this.scroller.scrollTop;
    }
    const height = this.rowHeight, count = this.count;
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / height) - OVERSCAN);
    const last = Math.min(count, Math.ceil((this.scroller.scrollTop + this.scroller.clientHeight) / height) + OVERSCAN);
    if (first === this.drawn.first && last === this.drawn.last && this.version === this.drawn.version) return;
    this.drawn = {first, last, version: this.version};
    const current = this.current >= 0 ? this.matches[this.current] : -1;
    const rows = [];
    for (let position = first; position < last; position++) {
      const row = this.makeRow(this.lineAt(position));
      const index = this.view === null ? position : this.view[position];
      if (this.query && this.isMatch(this.lines[index])) row.classList.add("match");
      if (index === current) row.classList.add("current");
      rows.push(row);
    }
    this.rows.style.transform = `translateY(${first * height}px)`;
    this.rows.replaceChildren(...rows);
    if (this.wrap && rows.length) {  // wrapped rows differ in height: place by their average, measured
      const average = this.rows.getBoundingClientRect().height / rows.length;
      if (Math.abs(average - this.rowHeight) > 0.5) {
        this.rowHeight = average;
        this.schedule();
      }
    }
    if (!this.painted && count) {
      this.painted = true;
      requestAnimationFrame(() => performance.mark("livelog:run-painted"));
    }
  }

  makeRow(line) {
    const row = document.createElement("div");
    row.className = `row ${line.level}`;
    if (line.seq === this.target) row.classList.add("target");
    row.dataset.seq = line.seq;
    const link = document.createElement("a");
    link.className = "seq";
    link.href = `#run=${encodeURIComponent(this.runId)}&line=${line.seq}`;
    link.textContent = line.seq;
    link.title = "Link to this line";
    const time = document.createElement("span");
    time.className = "ts";
    time.textContent = this.relative ? sinceStart(line.ts - this.started) : clock(line.ts);
    const level = document.createElement("span");
    level.className = "level";
    level.textContent = line.level;
    const message = document.createElement("span");
    message.className = "msg";
    renderAnsi(message, line.message);
    row.append(link, time, level, message);
    return row;
  }
}
