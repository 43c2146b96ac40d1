// The whiteboard: operations from the node, drawn on a 1600 × 900 canvas; our own
// strokes go out a segment at a time and show on an overlay until the node echoes them.
import { CLIENT, SERVER } from './protocol.js';
import { on, send } from './signal.js';
import { state, myId } from './state.js';
import { $, status, togglePanel } from './dom.js';
import { t } from './i18n.js';

const canvas = $('board-canvas'), overlay = $('board-overlay');
const ctx = canvas.getContext('2d'), octx = overlay.getContext('2d');
let ops = [], ids = new Set(), pending = [], strokeId = 0, drawing = null, myStrokes = [];
let flushTimer = null;

function paint(c, op) {
  c.save();
  c.globalCompositeOperation = op.tool === 'eraser' ? 'destination-out' : 'source-over';
  c.strokeStyle = c.fillStyle = op.color;
  c.lineWidth = op.tool === 'eraser' ? op.width * 3 : op.width;
  c.lineCap = c.lineJoin = 'round';
  const p = op.points;
  if (op.tool === 'text') {
    c.font = (op.width * 4) + 'px system-ui, sans-serif';
    c.textBaseline = 'top';
    c.fillText(op.text, p[0], p[1]);
  } else if (op.tool === 'rect') {
    c.strokeRect(Math.min(p[0], p[2]), Math.min(p[1], p[3]), Math.abs(p[2] - p[0]), Math.abs(p[3] - p[1]));
  } else if (op.tool === 'ellipse') {
    c.beginPath();
    c.ellipse((p[0] + p[2]) / 2, (p[1] + p[3]) / 2, Math.abs(p[2] - p[0]) / 2, Math.abs(p[3] - p[1]) / 2, 0, 0, 2 * Math.PI);
    c.stroke();
  } else {
    c.beginPath();
    c.moveTo(p[0], p[1]);
    for (let i = 2; i < p.length; i += 2) c.lineTo(p[i], p[i + 1]);
    if (p.length === 2) c.lineTo(p[0] + 0.1, p[1]);
    c.stroke();
  }
  c.restore();
}

function redraw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (const op of ops) paint(ctx, op);
}

function overlayDraw() {
  octx.clearRect(0, 0, overlay.width, overlay.height);
  for (const op of pending) paint(octx, op);
  if (drawing) paint(octx, drawing);
}

// Where a pointer event is, in board units.
function at(e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.round((e.clientX - r.left) * canvas.width / r.width);
  const y = Math.round((e.clientY - r.top) * canvas.height / r.height);
  return [Math.max(0, Math.min(canvas.width, x)), Math.max(0, Math.min(canvas.height, y))];
}

function style() {
  return { tool: $('board-tool').value, color: $('board-color').value, width: Number($('board-width').value) || 4 };
}

function sendOp(op) {
  pending.push(op);
  send({ type: CLIENT.board_draw, stroke_id: op.stroke_id, tool: op.tool, color: op.color, width: op.width, points: op.points, text: op.text || '' });
}

// A stroke goes out a segment at a time while it is drawn (every 50 ms), each starting
// where the last ended.
function flush() {
  if (!drawing || drawing.points.length < 2 || !drawing.unsent) return;
  sendOp({ ...drawing, points: drawing.points.slice(drawing.from) });
  drawing.from = drawing.points.length - 2;
  drawing.unsent = false;
}

function load(list) {
  ops = list.slice();
  ids = new Set(ops.map((o) => o.op_id));
  pending = [];
  redraw();
  overlayDraw();
}

function add(op) {
  if (ids.has(op.op_id)) return;
  ids.add(op.op_id);
  ops.push(op);
  paint(ctx, op);
  if (op.author === myId()) {
    const i = pending.findIndex((p) => p.stroke_id === op.stroke_id);
    if (i >= 0) { pending.splice(i, 1); overlayDraw(); }
  }
}

function undo(author, stroke) {
  ops = ops.filter((o) => !(o.author === author && o.stroke_id === stroke));
  redraw();
}

// A refused operation (the node answered `error` to our `board_draw`) is not kept as drawn.
export function boardRefused() {
  pending = [];
  overlayDraw();
}

// The board on white, as the PNG that "Save as PNG" downloads.
function png() {
  const out = document.createElement('canvas');
  out.width = canvas.width; out.height = canvas.height;
  const c = out.getContext('2d');
  c.fillStyle = '#fff'; c.fillRect(0, 0, out.width, out.height);
  c.drawImage(canvas, 0, 0);
  return out.toDataURL('image/png');
}

on(SERVER.board, (m) => load(m.ops));
on(SERVER.board_draw, (m) => add(m));
on(SERVER.board_undo, (m) => undo(m.author, m.stroke_id));
on(SERVER.board_clear, (m) => {
  load([]);
  if (m.by !== myId()) status(t('board.cleared', { name: m.by_name || t('board.cleared.default_name') }));
});

canvas.addEventListener('pointerdown', (e) => {
  if (!state.ws) return;
  const s = style();
  const p = at(e);
  if (s.tool === 'text') {
    const text = prompt(t('board.text.prompt'));
    if (text && text.trim()) {
      strokeId += 1; myStrokes.push(strokeId);
      sendOp({ ...s, stroke_id: strokeId, points: p, text: text.trim().slice(0, 200) });
      overlayDraw();
    }
    return;
  }
  strokeId += 1; myStrokes.push(strokeId);
  drawing = { ...s, stroke_id: strokeId, points: p.slice(), from: 0, unsent: true };
  try { canvas.setPointerCapture(e.pointerId); } catch (_) { /* synthetic events */ }
  if (s.tool === 'pen' || s.tool === 'eraser') flushTimer = setInterval(flush, 50);
  overlayDraw();
});

canvas.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const p = at(e);
  if (drawing.tool === 'pen' || drawing.tool === 'eraser') {
    drawing.points.push(p[0], p[1]);
    drawing.unsent = true;
    if (drawing.points.length - drawing.from >= 2 * 400) flush();
  } else {
    drawing.points = drawing.points.slice(0, 2).concat(p);
  }
  overlayDraw();
});

function end(e) {
  if (!drawing) return;
  clearInterval(flushTimer);
  if (drawing.tool === 'pen' || drawing.tool === 'eraser') {
    if (drawing.from === 0) drawing.unsent = true;
    flush();
  } else {
    drawing.points = drawing.points.slice(0, 2).concat(at(e));
    sendOp({ ...drawing });
  }
  drawing = null;
  overlayDraw();
}
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);

$('board-toggle').onclick = () => togglePanel('board', $('board').hidden);
$('board-undo').onclick = () => {
  const s = myStrokes.pop();
  if (s != null) send({ type: CLIENT.board_undo, stroke_id: s });
};
$('board-clear').onclick = () => { if (confirm(t('board.clear.confirm'))) send({ type: CLIENT.board_clear }); };
$('board-allow').onchange = () => send({ type: CLIENT.board_allow, allowed: $('board-allow').checked });
$('board-export').onclick = () => {
  const a = document.createElement('a');
  a.href = png();
  a.download = t('board.export.filename', { meeting: state.meeting || t('board.export.default_meeting') });
  a.click();
};
