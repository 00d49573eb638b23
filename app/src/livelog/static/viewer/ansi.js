// ANSI terminal escapes in log messages: SGR colours and styles become segments with classes (never markup), every
// other escape is dropped, so neither the screen nor a copy shows them raw.
const ESCAPES = /\x1b\[[0-?]*[ -\/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]/g;

export function stripAnsi(text) {
  return text.includes("\x1b") ? text.replace(ESCAPES, "") : text;
}

// xterm's 256-colour palette beyond the 16 named colours (those are classes, styled by viewer.css)
function paletteColour(n) {
  if (n >= 232) {
    const grey = 8 + (n - 232) * 10;
    return `rgb(${grey}, ${grey}, ${grey})`;
  }
  const cube = n - 16, step = (v) => (v === 0 ? 0 : 55 + v * 40);
  return `rgb(${step(Math.floor(cube / 36))}, ${step(Math.floor(cube / 6) % 6)}, ${step(cube % 6)})`;
}

function extendedColour(codes, i) {  // 38;5;n or 38;2;r;g;b: [colour, codes consumed]
  if (codes[i + 1] === 5 && codes[i + 2] !== undefined) {
    const n = codes[i + 2] & 255;
    return [n < 16 ? {named: n} : {css: paletteColour(n)}, 2];
  }
  if (codes[i + 1] === 2 && codes[i + 4] !== undefined) {
    return [{css: `rgb(${codes[i + 2] & 255}, ${codes[i + 3] & 255}, ${codes[i + 4] & 255})`}, 4];
  }
  return [null, 0];
}

function applySgr(style, params) {
  const codes = params === "" ? [0] : params.split(";").map((code) => Number(code) || 0);
  for (let i = 0; i < codes.length; i++) {
    const code = codes[i];
    if (code === 0) Object.assign(style, {bold: false, dim: false, italic: false, underline: false, fg: null, bg: null});
    else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 22) style.bold = style.dim = false;
    else if (code === 23) style.italic = false;
    else if (code === 24) style.underline = false;
    else if (code >= 30 && code <= 37) style.fg = {named: code - 30};
    else if (code >= 90 && code <= 97) style.fg = {named: code - 90 + 8};
    else if (code === 39) style.fg = null;
    else if (code >= 40 && code <= 47) style.bg = {named: code - 40};
    else if (code >= 100 && code <= 107) style.bg = {named: code - 100 + 8};
    else if (code === 49) style.bg = null;
    else if (code === 38 || code === 48) {
      const [colour, used] = extendedColour(codes, i);
      if (code === 38) style.fg = colour; else style.bg = colour;
      i += used;
    }
  }
}

// The message as segments: [{text, classes, color, background}]; text without escapes is one plain segment.
export function segments(text) {
  if (!text.includes("\x1b")) return [{text, classes: "", color: null, background: null}];
  const style = {bold: false, dim: false, italic: false, underline: false, fg: null, bg: null};
  const out = [];
  let at = 0;
  const push = (part) => {
    if (!part) return;
    const classes = [];
    if (style.bold) classes.push("ansi-bold");
    if (style.dim) classes.push("ansi-dim");
    if (style.italic) classes.push("ansi-italic");
    if (style.underline) classes.push("ansi-underline");
    if (style.fg && style.fg.named !== undefined) classes.push(`ansi-fg-${style.fg.named}`);
    if (style.bg && style.bg.named !== undefined) classes.push(`ansi-bg-${style.bg.named}`);
    out.push({
      text: part,
      classes: classes.join(" "),
      color: style.fg && style.fg.css ? style.fg.css : null,
      background: style.bg && style.bg.css ? style.bg.css : null,
    });
  };
  for (const match of text.matchAll(ESCAPES)) {
    push(text.slice(at, match.index));
    at = match.index + match[0].length;
    const sgr = /^\x1b\[([0-9;]*)m$/.exec(match[0]);
    if (sgr) applySgr(style, sgr[1]);
  }
  push(text.slice(at));
  return out;
}

// Fill `element` with the message: text nodes and spans only (textContent, never HTML); colours outside the
// 16 named ones go through the CSS object model, which the page's Content-Security-Policy allows.
export function renderAnsi(element, text) {
  const parts = segments(text);
  if (parts.length === 1 && !parts[0].classes && !parts[0].color && !parts[0].background) {
    element.textContent = parts[0].text;
    return;
  }
  element.textContent = "";
  for (const part of parts) {
    if (!part.classes && !part.color && !part.background) {
      element.append(part.text);
      continue;
    }
    const span = document.createElement("span");
    span.textContent = part.text;
    if (part.classes) span.className = part.classes;
    if (part.color) span.style.color = part.color;
    if (part.background) span.style.backgroundColor = part.background;
    element.append(span);
  }
}
