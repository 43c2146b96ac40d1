// The meeting's chat: what arrives goes in the log, and the form sends.
import { CLIENT, SERVER } from './protocol.js';
import { on, send } from './signal.js';
import { $ } from './dom.js';
import { t } from './i18n.js';

// Every chat message of this visit, as the node sent it (the tests read the texts).
export const messages = [];

export const sendChat = (text) => send({ type: CLIENT.chat, text });

on(SERVER.chat, (m) => {
  messages.push(m);
  const li = document.createElement('li');
  li.textContent = t('chat.message', { name: m.name, text: m.text });
  $('chat-log').append(li);
});

$('chat-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const text = $('chat-text').value.trim();
  if (text) sendChat(text);
  $('chat-text').value = '';
});
