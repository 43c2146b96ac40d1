// The signaling messages: one table from each message the media node sends to the one
// function that handles it, and `send` for ours. Names come from protocol.js, which the
// signaling crate generates, so the page and the node cannot drift apart unnoticed.
import { CLIENT, SERVER } from './protocol.js';
import { state } from './state.js';

const handlers = new Map();
const serverNames = new Set(Object.values(SERVER));
const clientNames = new Set(Object.values(CLIENT));

// Each module registers its own handlers as it loads: `on(SERVER.chat, (m) => …)`. A
// name the node does not send (a typo, or `SERVER.typo`, which is undefined) throws
// there and then, rather than waiting for a message that never comes.
export function on(type, handler) {
  if (!serverNames.has(type)) throw new Error('on(' + type + '): not a message the media node sends (protocol.js)');
  if (handlers.has(type)) throw new Error('on(' + type + '): already handled');
  handlers.set(type, handler);
}

// The node's messages that no module handles (the entry checks once all have loaded).
export const unhandled = () => [...serverNames].filter((n) => !handlers.has(n));

// A message the page has no handler for (a newer node?) is reported, not dropped in
// silence.
export async function dispatch(m) {
  const handler = handlers.get(m && m.type);
  if (!handler) {
    console.warn('signaling: a message this page does not handle', m);
    return;
  }
  await handler(m);
}

export function send(msg) {
  if (!clientNames.has(msg.type)) throw new Error('send: ' + msg.type + ' is not a client message (protocol.js)');
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(Object.assign({ v: 1 }, msg)));
}
