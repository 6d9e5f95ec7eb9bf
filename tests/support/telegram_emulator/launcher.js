#!/usr/bin/env node
/*
 * Telegram Bot API emulator for end-to-end tests.
 *
 *   node launcher.js --port N [--host 127.0.0.1] [--store-timeout 3600] [--no-stdin-watch]
 *
 * Starts telegram-test-api (pinned 4.2.1) on host:port and prints exactly one
 * line "READY <port>" once the socket is listening.  The process exits when
 * its stdin is closed (so it never outlives the Python test process that
 * spawned it) or on SIGTERM/SIGINT.
 *
 * The stock package does not work with aiogram 3; this launcher puts its own
 * express app in front of the package's app and handles every /bot<token>/*
 * call itself:
 *   - getMe returns a complete User (is_bot, ...);
 *   - callback updates carry chat_instance and the real bot message;
 *   - getUpdates honours offset (confirms older updates), limit,
 *     allowed_updates and long polling (timeout);
 *   - sendMessage, sendPhoto, sendDocument, editMessage*, deleteMessage, answerCallbackQuery,
 *     commands, chat actions, menu button, getFile ... are implemented, with
 *     real Telegram limits (4096 text, 1024 caption, 1-64 byte callback_data);
 *   - bodies may be JSON, x-www-form-urlencoded or multipart/form-data.
 * Unknown bot methods answer HTTP 500 {"ok":false,...} so a test fails loudly.
 *
 * The package's test-client routes (/sendMessage, /sendCommand, /sendCallback,
 * /getUpdates, /getUpdatesHistory) still work (requests fall through to the
 * package's express app).  Extra control routes for tests live under /_control.
 */
'use strict';

const path = require('path');
const express = require('express');
const TelegramServer = require('telegram-test-api'); // module.exports is the class

// ---------------------------------------------------------------- arguments
function parseArgs(argv) {
  const out = { port: null, host: '127.0.0.1', storeTimeout: 3600, watchStdin: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--port') out.port = Number(next());
    else if (a.startsWith('--port=')) out.port = Number(a.slice(7));
    else if (a === '--host') out.host = next();
    else if (a.startsWith('--host=')) out.host = a.slice(7);
    else if (a === '--store-timeout') out.storeTimeout = Number(next());
    else if (a.startsWith('--store-timeout=')) out.storeTimeout = Number(a.slice(16));
    else if (a === '--no-stdin-watch') out.watchStdin = false;
  }
  if (!Number.isInteger(out.port) || out.port <= 0 || out.port > 65535) {
    process.stderr.write('usage: node launcher.js --port N (1..65535; 0 is not supported)\n');
    process.exit(2);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- state
const server = new TelegramServer({
  port: args.port,
  host: args.host,
  storeTimeout: args.storeTimeout,
});

const MAX_LONG_POLL_S = 50;
const TEXT_LIMIT = 4096;
const CAPTION_LIMIT = 1024;
const CALLBACK_ANSWER_TEXT_LIMIT = 200;
const DOCUMENT_LIMIT = 50 * 1024 * 1024;

let state;
function resetState() {
  state = {
    seq: 0, // bumps on every bot send/edit/delete; lets clients wait for "something new"
    botLog: [], // every message the bot sent (all tokens, all chats), in order
    chats: new Map(), // chat id (string) -> Chat object learned from user updates
    files: new Map(), // file_id -> {file_id, file_unique_id, file_size, file_path, data(Buffer), ...}
    fileCounter: 0,
    callbacks: new Map(), // callback_query_id -> record
    failures: [], // injected failure rules
    calls: [], // {method, chat_id, t_ms, status}
    commands: new Map(), // token -> Map(scopeKey -> commands)
    menuButtons: new Map(), // token|chat -> MenuButton
    chatActions: [], // {token, chat_id, action, t_ms}
    allowedUpdates: new Map(), // token -> array
  };
}
resetState();

const nowMs = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------- helpers
class ApiError extends Error {
  constructor(code, description, parameters) {
    super(description);
    this.code = code;
    this.description = description;
    this.parameters = parameters;
  }
}
const badRequest = (d) => new ApiError(400, `Bad Request: ${d}`);

function maybeJson(v) {
  if (typeof v !== 'string') return v;
  const s = v.trim();
  if (!s || !'[{"'.includes(s[0]) && s !== 'null' && s !== 'true' && s !== 'false') return v;
  try {
    return JSON.parse(s);
  } catch (_e) {
    return v;
  }
}

function toBool(v) {
  return v === true || v === 'true' || v === 'True' || v === '1' || v === 1;
}

function toInt(v) {
  if (v === undefined || v === null || v === '') return null;
  const n = Number(v);
  return Number.isFinite(n) ? Math.trunc(n) : null;
}

function normChatId(v) {
  if (v === undefined || v === null || v === '') return null;
  if (typeof v === 'number') return v;
  const s = String(v).trim();
  return /^-?\d+$/.test(s) ? Number(s) : s;
}

function chatKey(chatId) {
  return chatId === undefined || chatId === null ? null : String(chatId);
}

function botIdFromToken(token) {
  const n = Number(String(token).split(':')[0]);
  return Number.isFinite(n) && n > 0 ? n : 666;
}

function botUser(token) {
  return {
    id: botIdFromToken(token),
    is_bot: true,
    first_name: 'Test Bot',
    username: 'test_emulator_bot',
  };
}

function chatObject(chatId) {
  const known = state.chats.get(chatKey(chatId));
  if (known) return { ...known };
  const asNum = Number(chatId);
  const id = Number.isFinite(asNum) ? asNum : chatId;
  if (typeof id === 'number' && id < 0) return { id, type: 'supergroup', title: 'Group' };
  return { id, type: 'private', first_name: 'User' };
}

function chatInstanceFor(chatId) {
  // Stable per chat, looks like Telegram's (numeric string).
  const s = String(chatId);
  let h = 1469598103934665603n;
  for (const ch of s) h = ((h ^ BigInt(ch.codePointAt(0))) * 1099511628211n) & ((1n << 63n) - 1n);
  return String(-h);
}

function utf8Bytes(s) {
  return Buffer.byteLength(String(s), 'utf8');
}

// ---------------------------------------------------------------- HTML parse_mode
const SIMPLE_TAGS = {
  b: 'bold',
  strong: 'bold',
  i: 'italic',
  em: 'italic',
  u: 'underline',
  ins: 'underline',
  s: 'strikethrough',
  strike: 'strikethrough',
  del: 'strikethrough',
  'tg-spoiler': 'spoiler',
  code: 'code',
  pre: 'pre',
  a: 'text_link',
  span: 'spoiler',
  'tg-emoji': 'custom_emoji',
  blockquote: 'blockquote',
};

function parseAttrs(s) {
  const attrs = {};
  const re = /([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  let m;
  while ((m = re.exec(s))) {
    const v = m[2] ?? m[3] ?? m[4] ?? '';
    attrs[m[1].toLowerCase()] = decodeHtmlEntities(v);
  }
  return attrs;
}

function decodeHtmlEntities(s) {
  return s.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (all, e) => {
    switch (e) {
      case 'lt':
        return '<';
      case 'gt':
        return '>';
      case 'amp':
        return '&';
      case 'quot':
        return '"';
      case 'apos':
        return "'";
      default:
        try {
          return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
        } catch (_err) {
          return all;
        }
    }
  });
}

/**
 * Minimal Telegram-HTML parser: returns {text, entities} (offsets in UTF-16
 * code units like Telegram) or throws 400 "can't parse entities: ..." for
 * unsupported/unbalanced tags, as Telegram does.
 */
function parseHtml(raw) {
  let out = '';
  const entities = [];
  const stack = [];
  let i = 0;
  const byteOffset = (pos) => utf8Bytes(raw.slice(0, pos));
  while (i < raw.length) {
    const ch = raw[i];
    if (ch === '&') {
      const m = /^&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/.exec(raw.slice(i, i + 12));
      if (m) {
        out += decodeHtmlEntities(m[0]);
        i += m[0].length;
        continue;
      }
      out += ch;
      i++;
      continue;
    }
    if (ch !== '<') {
      out += ch;
      i++;
      continue;
    }
    const end = raw.indexOf('>', i);
    if (end < 0) {
      throw badRequest(`can't parse entities: Unclosed start tag at byte offset ${byteOffset(i)}`);
    }
    const inner = raw.slice(i + 1, end);
    if (inner.startsWith('/')) {
      const name = inner.slice(1).trim().toLowerCase();
      const top = stack.pop();
      if (!top) {
        throw badRequest(`can't parse entities: Unexpected end tag at byte offset ${byteOffset(i)}`);
      }
      if (name && name !== top.name) {
        throw badRequest(
          `can't parse entities: Unmatched end tag at byte offset ${byteOffset(i)}, expected "</${top.name}>", found "</${name}>"`,
        );
      }
      const length = out.length - top.offset;
      if (length > 0 && top.entity) {
        entities.push({ ...top.entity, offset: top.offset, length });
      }
      i = end + 1;
      continue;
    }
    const m = /^([a-zA-Z][a-zA-Z0-9-]*)([\s\S]*)$/.exec(inner);
    const name = m ? m[1].toLowerCase() : '';
    if (!m || !(name in SIMPLE_TAGS)) {
      throw badRequest(`can't parse entities: Unsupported start tag "${name || inner}" at byte offset ${byteOffset(i)}`);
    }
    const attrs = parseAttrs(m[2] || '');
    let entity = { type: SIMPLE_TAGS[name] };
    if (name === 'a') {
      const href = attrs.href || '';
      const mention = /^tg:\/\/user\?id=(\d+)$/.exec(href);
      if (mention) entity = { type: 'text_mention', user: { id: Number(mention[1]), is_bot: false, first_name: '' } };
      else if (href) entity = { type: 'text_link', url: href };
      else entity = null;
    } else if (name === 'span') {
      if (attrs.class !== 'tg-spoiler') {
        throw badRequest(`can't parse entities: Tag "span" must have class "tg-spoiler" at byte offset ${byteOffset(i)}`);
      }
    } else if (name === 'tg-emoji') {
      entity = { type: 'custom_emoji', custom_emoji_id: attrs['emoji-id'] || '0' };
    } else if (name === 'blockquote' && 'expandable' in attrs) {
      entity = { type: 'expandable_blockquote' };
    } else if (name === 'code') {
      const parent = stack[stack.length - 1];
      const lang = /^language-(.+)$/.exec(attrs.class || '');
      if (parent && parent.name === 'pre' && lang && parent.entity) {
        parent.entity.language = lang[1];
        entity = null; // <pre><code class="language-x"> is one pre entity
      }
    }
    stack.push({ name, offset: out.length, entity });
    i = end + 1;
  }
  if (stack.length) {
    throw badRequest(`can't parse entities: Can't find end tag corresponding to start tag "${stack[stack.length - 1].name}"`);
  }
  entities.sort((a, b) => a.offset - b.offset || b.length - a.length);
  return { text: out, entities };
}

/** Telegram strips leading/trailing whitespace; keep entities in range. */
function trimWithEntities(text, entities) {
  const lead = text.length - text.trimStart().length;
  const trimmed = text.trim();
  const res = [];
  for (const e of entities || []) {
    let start = e.offset - lead;
    let end = e.offset + e.length - lead;
    start = Math.max(0, start);
    end = Math.min(trimmed.length, end);
    if (end > start) res.push({ ...e, offset: start, length: end - start });
  }
  return { text: trimmed, entities: res };
}

/** -> {raw, plain, entities, parse_mode} */
function formatText(raw, parseMode, explicitEntities) {
  const mode = parseMode ? String(parseMode) : null;
  let parsed;
  if (mode && mode.toLowerCase() === 'html') {
    parsed = parseHtml(String(raw));
  } else {
    // Markdown / MarkdownV2 are not interpreted: plain text == raw text.
    const ents = Array.isArray(explicitEntities) ? explicitEntities : [];
    parsed = { text: String(raw), entities: ents };
  }
  const t = trimWithEntities(parsed.text, parsed.entities);
  return { raw: String(raw), plain: t.text, entities: t.entities, parse_mode: mode };
}

// ---------------------------------------------------------------- reply_markup
const INLINE_ACTIONS = [
  'url',
  'callback_data',
  'web_app',
  'login_url',
  'switch_inline_query',
  'switch_inline_query_current_chat',
  'switch_inline_query_chosen_chat',
  'copy_text',
  'callback_game',
  'pay',
];

function validateReplyMarkup(markup) {
  if (markup === undefined || markup === null || markup === '') return null;
  const m = maybeJson(markup);
  if (typeof m !== 'object' || Array.isArray(m)) throw badRequest("can't parse reply keyboard markup JSON object");
  if ('inline_keyboard' in m) {
    if (!Array.isArray(m.inline_keyboard) || m.inline_keyboard.some((row) => !Array.isArray(row))) {
      throw badRequest('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays');
    }
    for (const row of m.inline_keyboard) {
      for (const btn of row) {
        if (!btn || typeof btn !== 'object' || typeof btn.text !== 'string') {
          throw badRequest("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard");
        }
        if (!INLINE_ACTIONS.some((k) => k in btn)) {
          throw badRequest('text buttons are unallowed in the inline keyboard');
        }
        if ('callback_data' in btn) {
          const n = utf8Bytes(btn.callback_data ?? '');
          if (typeof btn.callback_data !== 'string' || n < 1 || n > 64) {
            throw badRequest('BUTTON_DATA_INVALID');
          }
        }
      }
    }
  } else if ('keyboard' in m) {
    if (!Array.isArray(m.keyboard) || m.keyboard.some((row) => !Array.isArray(row))) {
      throw badRequest('field "keyboard" of the ReplyKeyboardMarkup must be an Array of Arrays');
    }
  }
  return m;
}

const isInline = (m) => !!(m && typeof m === 'object' && 'inline_keyboard' in m);

// ---------------------------------------------------------------- files
function guessMime(fileName, partType) {
  const ext = path.extname(fileName || '').toLowerCase().slice(1);
  const map = {
    pdf: 'application/pdf',
    txt: 'text/plain',
    csv: 'text/csv',
    html: 'text/html',
    htm: 'text/html',
    json: 'application/json',
    xml: 'application/xml',
    ics: 'text/calendar',
    zip: 'application/zip',
    png: 'image/png',
    jpg: 'image/jpeg',
    jpeg: 'image/jpeg',
    gif: 'image/gif',
    webp: 'image/webp',
    svg: 'image/svg+xml',
    doc: 'application/msword',
    docx: 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    xls: 'application/vnd.ms-excel',
    xlsx: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    ppt: 'application/vnd.ms-powerpoint',
    pptx: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    odt: 'application/vnd.oasis.opendocument.text',
    ods: 'application/vnd.oasis.opendocument.spreadsheet',
    md: 'text/markdown',
  };
  if (map[ext]) return map[ext];
  if (partType && partType !== 'application/octet-stream') return partType.split(';')[0].trim();
  return 'application/octet-stream';
}

function imageSize(buf) {
  if (!buf || buf.length < 24) return null;
  // PNG
  if (buf.readUInt32BE(0) === 0x89504e47) return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20), format: 'png' };
  // GIF
  if (buf.toString('ascii', 0, 3) === 'GIF') return { width: buf.readUInt16LE(6), height: buf.readUInt16LE(8), format: 'gif' };
  // JPEG
  if (buf[0] === 0xff && buf[1] === 0xd8) {
    let p = 2;
    while (p + 9 < buf.length) {
      if (buf[p] !== 0xff) {
        p++;
        continue;
      }
      const marker = buf[p + 1];
      const len = buf.readUInt16BE(p + 2);
      if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
        return { height: buf.readUInt16BE(p + 5), width: buf.readUInt16BE(p + 7), format: 'jpeg' };
      }
      p += 2 + len;
    }
  }
  return null;
}

function registerFile(kind, data, extra) {
  state.fileCounter += 1;
  const n = state.fileCounter;
  const prefix = kind === 'photo' ? 'AgACAgIAAxkBAAI' : kind === 'sticker' ? 'CAACAgIAAxkBAAI' : 'BQACAgIAAxkBAAI';
  const rec = {
    file_id: `${prefix}emu${n}`,
    file_unique_id: `AQADemu${n}`,
    file_size: data ? data.length : 0,
    file_path: `${kind}s/file_${n}${path.extname((extra && extra.file_name) || '') || ''}`,
    data: data || Buffer.alloc(0),
    kind,
    ...(extra || {}),
  };
  state.files.set(rec.file_id, rec);
  return rec;
}

/**
 * Resolve an InputFile parameter: an uploaded part ("attach://key" or a part
 * named like the field), an existing file_id, or a URL.
 */
function resolveInputFile(req, field, kind) {
  const v = req.params_[field];
  const files = req.files_ || {};
  let part = null;
  if (typeof v === 'string' && v.startsWith('attach://')) {
    part = files[v.slice(9)];
    if (!part) throw badRequest(`wrong file identifier/HTTP URL specified`);
  } else if (files[field]) {
    part = files[field];
  }
  if (part) {
    const fileName = part.filename || field;
    const mime = guessMime(fileName, part.contentType);
    const extra = { file_name: fileName, mime_type: mime };
    if (kind === 'photo') {
      const dims = imageSize(part.data);
      extra.width = dims ? dims.width : 100;
      extra.height = dims ? dims.height : 100;
      extra.image_format = dims ? dims.format : null;
    }
    return registerFile(kind, part.data, extra);
  }
  if (typeof v === 'string' && v) {
    if (state.files.has(v)) return state.files.get(v);
    if (/^https?:\/\//i.test(v)) {
      return registerFile(kind, Buffer.alloc(0), {
        url: v,
        file_name: path.basename(new URL(v).pathname) || 'file',
        mime_type: guessMime(new URL(v).pathname, null),
        width: 100,
        height: 100,
      });
    }
    throw badRequest('wrong file identifier/HTTP URL specified');
  }
  throw badRequest(`there is no ${kind} in the request`);
}

// ---------------------------------------------------------------- multipart
function parseMultipart(buf, contentType) {
  const bm = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType || '');
  const fields = {};
  const files = {};
  if (!bm || !Buffer.isBuffer(buf)) return { fields, files };
  const boundary = (bm[1] || bm[2]).trim();
  const delim = Buffer.from(`--${boundary}`);
  const sep = Buffer.from(`\r\n--${boundary}`);
  let pos = buf.indexOf(delim);
  if (pos < 0) return { fields, files };
  pos += delim.length;
  for (;;) {
    if (buf[pos] === 0x2d && buf[pos + 1] === 0x2d) break; // closing "--"
    if (buf[pos] === 0x0d && buf[pos + 1] === 0x0a) pos += 2;
    const next = buf.indexOf(sep, pos);
    if (next < 0) break;
    const part = buf.subarray(pos, next);
    const headerEnd = part.indexOf('\r\n\r\n');
    if (headerEnd >= 0) {
      const headerText = part.subarray(0, headerEnd).toString('utf8');
      const body = part.subarray(headerEnd + 4);
      const headers = {};
      for (const line of headerText.split('\r\n')) {
        const idx = line.indexOf(':');
        if (idx > 0) headers[line.slice(0, idx).trim().toLowerCase()] = line.slice(idx + 1).trim();
      }
      const cd = headers['content-disposition'] || '';
      const nameM = /(?:^|;)\s*name="((?:[^"\\]|\\.)*)"/i.exec(cd) || /(?:^|;)\s*name=([^;]+)/i.exec(cd);
      const fnStarM = /filename\*=(?:utf-8|UTF-8)''([^;]+)/.exec(cd);
      const fnM = /(?:^|;)\s*filename="((?:[^"\\]|\\.)*)"/i.exec(cd) || /(?:^|;)\s*filename=([^;]+)/i.exec(cd);
      const name = nameM ? nameM[1].replace(/\\(.)/g, '$1') : '';
      let filename = null;
      if (fnStarM) filename = decodeURIComponent(fnStarM[1]);
      else if (fnM) filename = fnM[1].replace(/\\(.)/g, '$1');
      if (filename !== null) {
        files[name] = { filename, contentType: headers['content-type'] || null, data: Buffer.from(body) };
      } else {
        fields[name] = body.toString('utf8');
      }
    }
    pos = next + sep.length;
  }
  return { fields, files };
}

// ---------------------------------------------------------------- bot log
function bump() {
  state.seq += 1;
  return state.seq;
}

function findLogEntry(token, chatId, messageId) {
  const ck = chatKey(chatId);
  const mid = Number(messageId);
  for (let i = state.botLog.length - 1; i >= 0; i--) {
    const e = state.botLog[i];
    if (e.token === token && e.chat_key === ck && e.message_id === mid && !e.deleted) return e;
  }
  return null;
}

function fileView(f, withData) {
  if (!f) return undefined;
  const v = {
    file_id: f.file_id,
    file_unique_id: f.file_unique_id,
    file_name: f.file_name,
    mime_type: f.mime_type,
    file_size: f.file_size,
  };
  if (f.width !== undefined) {
    v.width = f.width;
    v.height = f.height;
  }
  if (f.url) v.url = f.url;
  if (withData) v.data_b64 = f.data.toString('base64');
  return v;
}

/** Bot-API Message object for a log entry (what Telegram returns / embeds in callbacks). */
function apiMessage(e) {
  const m = {
    message_id: e.message_id,
    from: botUser(e.token),
    chat: chatObject(e.chat_id),
    date: Math.floor(e.date_ms / 1000),
  };
  if (e.edit_date_ms) m.edit_date = Math.floor(e.edit_date_ms / 1000);
  if (e.reply_to_message_id) {
    m.reply_to_message = {
      message_id: e.reply_to_message_id,
      chat: chatObject(e.chat_id),
      date: Math.floor(e.date_ms / 1000),
    };
  }
  if (e.text !== null) {
    m.text = e.plain_text;
    if (e.entities && e.entities.length) m.entities = e.entities;
  }
  if (e.document) {
    const d = fileView(e.document, false);
    delete d.width;
    delete d.height;
    delete d.url;
    m.document = d;
  }
  if (e.photo) {
    m.photo = [
      {
        file_id: e.photo.file_id,
        file_unique_id: e.photo.file_unique_id,
        file_size: e.photo.file_size,
        width: e.photo.width,
        height: e.photo.height,
      },
    ];
  }
  if (e.caption !== null) {
    m.caption = e.plain_caption;
    if (e.caption_entities && e.caption_entities.length) m.caption_entities = e.caption_entities;
  }
  if (isInline(e.reply_markup)) m.reply_markup = e.reply_markup;
  return m;
}

function logView(e) {
  return {
    message_id: e.message_id,
    chat_id: e.chat_id,
    method: e.method,
    text: e.text,
    plain_text: e.plain_text,
    parse_mode: e.parse_mode,
    entities: e.entities,
    caption: e.caption,
    plain_caption: e.plain_caption,
    reply_markup: e.reply_markup,
    document: e.document ? fileView(e.document, true) : undefined,
    photo: e.photo ? fileView(e.photo, true) : undefined,
    reply_to_message_id: e.reply_to_message_id || null,
    params: e.params,
    edited: e.edited,
    edit_count: e.edit_count,
    history: e.history,
    deleted: e.deleted,
    date: Math.floor(e.date_ms / 1000),
    date_ms: e.date_ms,
    edit_date_ms: e.edit_date_ms || null,
    seq: e.seq,
  };
}

function storeBotMessage(token, chatId, method, fields, params) {
  const legacy = {
    chat_id: chatId,
    text: fields.text !== null ? fields.text : undefined,
    caption: fields.caption !== null ? fields.caption : undefined,
    parse_mode: fields.parse_mode || undefined,
    reply_markup: fields.reply_markup || undefined,
  };
  Object.keys(legacy).forEach((k) => legacy[k] === undefined && delete legacy[k]);
  // Allocates message_id/update_id from the package's shared counters and keeps
  // the package's own /getUpdates + /getUpdatesHistory client routes working.
  const msg = server.addBotMessage(legacy, token);
  const pkgEntry = server.storage.botMessages[server.storage.botMessages.length - 1];
  const e = {
    token,
    chat_id: typeof chatId === 'number' ? chatId : Number.isFinite(Number(chatId)) ? Number(chatId) : chatId,
    chat_key: chatKey(chatId),
    message_id: msg.message_id,
    method,
    date_ms: Date.now(),
    text: null,
    plain_text: null,
    entities: null,
    caption: null,
    plain_caption: null,
    caption_entities: null,
    parse_mode: null,
    reply_markup: null,
    document: null,
    photo: null,
    reply_to_message_id: null,
    params,
    edited: false,
    edit_count: 0,
    history: [],
    deleted: false,
    seq: 0,
    ...fields,
  };
  Object.defineProperty(e, 'pkg', { value: pkgEntry, enumerable: false, writable: true });
  e.seq = bump();
  state.botLog.push(e);
  return e;
}

function markEdited(e, snapshot) {
  e.history.push(snapshot);
  e.edited = true;
  e.edit_count += 1;
  e.edit_date_ms = Date.now();
  e.seq = bump();
  if (e.pkg) {
    // make the package's test client see the edit as a new/unread message
    e.pkg.isRead = false;
    e.pkg.time = Date.now();
    e.pkg.message = {
      ...e.pkg.message,
      text: e.text !== null ? e.text : undefined,
      caption: e.caption !== null ? e.caption : undefined,
      reply_markup: e.reply_markup || undefined,
      edited: true,
    };
  }
}

function snapshotOf(e) {
  return {
    text: e.text,
    plain_text: e.plain_text,
    caption: e.caption,
    plain_caption: e.plain_caption,
    reply_markup: e.reply_markup,
    t_ms: e.edit_date_ms || e.date_ms,
  };
}

// ---------------------------------------------------------------- user updates
function rememberChat(message) {
  if (message && message.chat && message.chat.id !== undefined) {
    state.chats.set(chatKey(message.chat.id), { ...message.chat });
  } else if (message && message.from && message.from.id !== undefined) {
    const f = message.from;
    const chat = { id: f.id, type: 'private', first_name: f.first_name };
    if (f.username) chat.username = f.username;
    state.chats.set(chatKey(f.id), chat);
  }
}

function normalizeUserMessage(raw, messageId, timeMs) {
  const m = { ...raw };
  delete m.botToken;
  if (messageId !== undefined && messageId !== null) m.message_id = messageId;
  if (m.date === undefined || m.date === null) m.date = Math.floor(timeMs / 1000);
  else if (Number(m.date) > 1e11) m.date = Math.floor(Number(m.date) / 1000);
  if (m.from) m.from = { is_bot: false, ...m.from };
  if (!m.chat && m.from) {
    m.chat = { id: m.from.id, type: 'private', first_name: m.from.first_name };
    if (m.from.username) m.chat.username = m.from.username;
  }
  if (m.chat && !m.chat.type) m.chat = { ...m.chat, type: 'private' };
  if (m.chat && m.chat.type === 'private') {
    // the package's client puts a "title" into private chats; Telegram doesn't
    m.chat = { ...m.chat };
    delete m.chat.title;
  }
  return m;
}

function latestMessageWithCallbackData(token, chatId, data) {
  const ck = chatKey(chatId);
  for (let i = state.botLog.length - 1; i >= 0; i--) {
    const e = state.botLog[i];
    if (e.token !== token || e.deleted || (ck !== null && e.chat_key !== ck) || !isInline(e.reply_markup)) continue;
    if (e.reply_markup.inline_keyboard.some((row) => row.some((b) => b.callback_data === data))) return e;
  }
  return null;
}

function formatUserUpdate(u) {
  if ('callbackQuery' in u) {
    const cq = u.callbackQuery;
    let message = cq.message;
    const chatId = message && message.chat ? message.chat.id : cq.from && cq.from.id;
    if (message && (message.message_id === undefined || message.date === undefined)) {
      // stock client sends callbacks without message_id/date: use the real bot message
      const e = latestMessageWithCallbackData(u.botToken, chatId, cq.data);
      message = e ? apiMessage(e) : normalizeUserMessage(message, 0, 0);
      if (!e) message.date = 0; // InaccessibleMessage
    }
    const out = {
      id: String(cq.id || u.callbackId),
      from: { is_bot: false, ...cq.from },
      chat_instance: cq.chat_instance || chatInstanceFor(chatId),
    };
    if (message) out.message = message;
    if (cq.data !== undefined) out.data = cq.data;
    return { update_id: u.updateId, callback_query: out };
  }
  const message = normalizeUserMessage(u.message, u.messageId, u.time);
  if (u.entities && !message.entities) message.entities = u.entities;
  return { update_id: u.updateId, message };
}

function updateType(upd) {
  return Object.keys(upd).find((k) => k !== 'update_id');
}

function pushUserUpdate(token, kind, payload) {
  const common = server.getCommonFields(token); // {time, botToken, updateId, messageId, isRead}
  let upd;
  if (kind === 'message') {
    upd = { ...common, message: payload };
    server.storage.userMessages.push(upd);
    server.updateId++;
    server.messageId++;
    server.emit('AddedUserMessage');
  } else {
    upd = { ...common, callbackQuery: payload, callbackId: payload.id };
    server.storage.userMessages.push(upd);
    server.updateId++;
    server.emit('AddedUserCallbackQuery');
  }
  return upd;
}

// ---------------------------------------------------------------- long polling
const pollWaiters = new Set();
function wakePollers() {
  for (const w of [...pollWaiters]) w();
}
['AddedUserMessage', 'AddedUserCommand', 'AddedUserCallbackQuery'].forEach((ev) => server.on(ev, wakePollers));

function collectUpdates(token, offset, limit, allowed) {
  const mine = server.storage.userMessages.filter((u) => u.botToken === token && !u.confirmed);
  if (offset !== null && offset < 0) {
    // negative offset: the last |offset| updates, older ones are forgotten
    const keep = mine.slice(offset);
    mine.slice(0, mine.length + offset).forEach((u) => {
      u.confirmed = true;
      u.isRead = true;
    });
    return keep.slice(0, limit).map(formatUserUpdate);
  }
  const result = [];
  for (const u of mine) {
    if (offset !== null && u.updateId < offset) {
      u.confirmed = true; // confirmed by offset: never delivered again
      u.isRead = true;
      continue;
    }
    const f = formatUserUpdate(u);
    if (allowed && allowed.length && !allowed.includes(updateType(f))) {
      u.confirmed = true; // Telegram never delivers update types the bot did not ask for
      u.isRead = true;
      continue;
    }
    if (result.length < limit) {
      u.isRead = true;
      result.push(f);
    }
  }
  return result;
}

// ---------------------------------------------------------------- failures
function matchFailure(method, chatId) {
  const lm = method.toLowerCase();
  const ck = chatKey(chatId);
  for (let i = 0; i < state.failures.length; i++) {
    const f = state.failures[i];
    const methodOk = f.method === '*' ? lm !== 'getupdates' : f.method.toLowerCase() === lm;
    if (!methodOk) continue;
    if (f.chat_id !== null && f.chat_id !== undefined && String(f.chat_id) !== ck) continue;
    if (f.times > 0) {
      f.times -= 1;
      if (f.times === 0) state.failures.splice(i, 1);
    }
    f.hits = (f.hits || 0) + 1;
    return f;
  }
  return null;
}

function failureError(f) {
  const code = Number(f.error_code);
  switch (code) {
    case 429: {
      const ra = toInt(f.retry_after) ?? 1;
      return new ApiError(429, f.description || `Too Many Requests: retry after ${ra}`, { retry_after: ra });
    }
    case 403:
      return new ApiError(403, f.description || 'Forbidden: bot was blocked by the user');
    case 400:
      return new ApiError(400, f.description || 'Bad Request: chat not found');
    case 401:
      return new ApiError(401, f.description || 'Unauthorized');
    case 404:
      return new ApiError(404, f.description || 'Not Found');
    case 409:
      return new ApiError(409, f.description || 'Conflict: terminated by other getUpdates request');
    case 502:
      return new ApiError(502, f.description || 'Bad Gateway');
    case 500:
    default:
      return new ApiError(code || 500, f.description || 'Internal Server Error');
  }
}

// ---------------------------------------------------------------- bot methods
function requireChatId(p) {
  if (p.chat_id === undefined || p.chat_id === null || p.chat_id === '') throw badRequest('chat_id is empty');
  return p.chat_id;
}

function checkText(fmt) {
  if (!fmt.plain.length) throw badRequest('message text is empty');
  if (fmt.plain.length > TEXT_LIMIT) throw badRequest('message is too long');
}

function checkCaption(fmt) {
  if (fmt && fmt.plain.length > CAPTION_LIMIT) throw badRequest('message caption is too long');
}

function replyToId(p) {
  const rp = maybeJson(p.reply_parameters);
  if (rp && typeof rp === 'object' && rp.message_id) return Number(rp.message_id);
  return toInt(p.reply_to_message_id);
}

function sendMedia(kind) {
  return (req, token, p) => {
    const chatId = requireChatId(p);
    const markup = validateReplyMarkup(p.reply_markup);
    let cap = null;
    if (p.caption !== undefined && p.caption !== null && p.caption !== '') {
      cap = formatText(p.caption, p.parse_mode, maybeJson(p.caption_entities));
      checkCaption(cap);
    }
    const file = resolveInputFile(req, kind, kind);
    if (kind === 'document' && file.file_size > DOCUMENT_LIMIT) throw new ApiError(413, 'Request Entity Too Large');
    const e = storeBotMessage(
      token,
      chatId,
      kind === 'photo' ? 'sendPhoto' : 'sendDocument',
      {
        caption: cap ? cap.raw : null,
        plain_caption: cap ? cap.plain : null,
        caption_entities: cap ? cap.entities : null,
        parse_mode: cap ? cap.parse_mode : null,
        reply_markup: markup,
        reply_to_message_id: replyToId(p),
        [kind]: file,
      },
      publicParams(p),
    );
    return apiMessage(e);
  };
}

function publicParams(p) {
  const out = {};
  for (const [k, v] of Object.entries(p)) {
    if (typeof v === 'string' && v.startsWith('attach://')) continue;
    out[k] = maybeJson(v);
  }
  return out;
}

function targetEntry(token, p) {
  if (p.inline_message_id) throw badRequest('inline messages are not supported by the emulator');
  const chatId = requireChatId(p);
  if (!p.message_id) throw badRequest('message identifier is not specified');
  const e = findLogEntry(token, chatId, p.message_id);
  if (!e) throw badRequest('message to edit not found');
  return e;
}

function sameJson(a, b) {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
}

function scopeKey(p) {
  const scope = maybeJson(p.scope) || { type: 'default' };
  return JSON.stringify([scope.type || 'default', String(scope.chat_id ?? ''), String(scope.user_id ?? ''), p.language_code || '']);
}

function commandsFor(token) {
  if (!state.commands.has(token)) state.commands.set(token, new Map());
  return state.commands.get(token);
}

const METHODS = {
  getme: (req, token) => ({
    ...botUser(token),
    can_join_groups: true,
    can_read_all_group_messages: false,
    supports_inline_queries: false,
    can_connect_to_business: false,
    has_main_web_app: false,
  }),

  logout: () => true,
  close: () => true,
  deletewebhook: () => true,
  getwebhookinfo: () => ({ url: '', has_custom_certificate: false, pending_update_count: 0 }),

  getupdates: async (req, token, p, res) => {
    const offset = toInt(p.offset);
    let limit = toInt(p.limit) ?? 100;
    limit = Math.max(1, Math.min(100, limit));
    const timeout = Math.max(0, Math.min(MAX_LONG_POLL_S, Number(p.timeout) || 0));
    let allowed = maybeJson(p.allowed_updates);
    if (Array.isArray(allowed)) state.allowedUpdates.set(token, allowed);
    allowed = state.allowedUpdates.get(token) || null;
    let result = collectUpdates(token, offset, limit, allowed);
    const deadline = Date.now() + timeout * 1000;
    while (!result.length && Date.now() < deadline) {
      // long poll: answer as soon as a new update for this bot arrives
      const closed = await new Promise((resolve) => {
        let timer = null;
        const done = (wasClosed) => {
          pollWaiters.delete(waiter);
          clearTimeout(timer);
          res.off('close', onClose);
          resolve(wasClosed);
        };
        const waiter = () => {
          const pending = server.storage.userMessages.some((u) => u.botToken === token && !u.confirmed && !u.isRead);
          if (pending) done(false);
        };
        const onClose = () => done(true);
        pollWaiters.add(waiter);
        res.on('close', onClose);
        timer = setTimeout(() => done(false), Math.max(0, deadline - Date.now()));
      });
      if (closed) return undefined; // client went away (aiogram stop_polling); nothing to send
      result = collectUpdates(token, null, limit, allowed);
    }
    return result;
  },

  sendmessage: (req, token, p) => {
    const chatId = requireChatId(p);
    if (p.text === undefined || p.text === null) throw badRequest('message text is empty');
    const fmt = formatText(p.text, p.parse_mode, maybeJson(p.entities));
    checkText(fmt);
    const markup = validateReplyMarkup(p.reply_markup);
    const e = storeBotMessage(
      token,
      chatId,
      'sendMessage',
      {
        text: fmt.raw,
        plain_text: fmt.plain,
        entities: fmt.entities,
        parse_mode: fmt.parse_mode,
        reply_markup: markup,
        reply_to_message_id: replyToId(p),
      },
      publicParams(p),
    );
    return apiMessage(e);
  },

  sendphoto: sendMedia('photo'),
  senddocument: sendMedia('document'),

  editmessagetext: (req, token, p) => {
    const e = targetEntry(token, p);
    if (e.text === null) throw badRequest('there is no text in the message to edit');
    if (p.text === undefined || p.text === null) throw badRequest('message text is empty');
    const fmt = formatText(p.text, p.parse_mode, maybeJson(p.entities));
    checkText(fmt);
    const markup = validateReplyMarkup(p.reply_markup); // omitted -> inline keyboard removed (like Telegram)
    const newMarkup = markup && isInline(markup) ? markup : null;
    const oldMarkup = isInline(e.reply_markup) ? e.reply_markup : null;
    if (fmt.plain === e.plain_text && sameJson(fmt.entities, e.entities) && sameJson(newMarkup, oldMarkup)) {
      throw badRequest(
        'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
      );
    }
    const snap = snapshotOf(e);
    e.text = fmt.raw;
    e.plain_text = fmt.plain;
    e.entities = fmt.entities;
    e.parse_mode = fmt.parse_mode;
    e.reply_markup = newMarkup;
    markEdited(e, snap);
    return apiMessage(e);
  },

  editmessagecaption: (req, token, p) => {
    const e = targetEntry(token, p);
    if (!e.document && !e.photo) throw badRequest('there is no caption in the message to edit');
    let cap = null;
    if (p.caption !== undefined && p.caption !== null && p.caption !== '') {
      cap = formatText(p.caption, p.parse_mode, maybeJson(p.caption_entities));
      checkCaption(cap);
    }
    const markup = validateReplyMarkup(p.reply_markup);
    const newMarkup = markup && isInline(markup) ? markup : null;
    if ((cap ? cap.plain : null) === e.plain_caption && sameJson(newMarkup, isInline(e.reply_markup) ? e.reply_markup : null)) {
      throw badRequest(
        'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
      );
    }
    const snap = snapshotOf(e);
    e.caption = cap ? cap.raw : null;
    e.plain_caption = cap ? cap.plain : null;
    e.caption_entities = cap ? cap.entities : null;
    e.reply_markup = newMarkup;
    markEdited(e, snap);
    return apiMessage(e);
  },

  editmessagereplymarkup: (req, token, p) => {
    const e = targetEntry(token, p);
    const markup = validateReplyMarkup(p.reply_markup);
    const newMarkup = markup && isInline(markup) ? markup : null;
    if (sameJson(newMarkup, isInline(e.reply_markup) ? e.reply_markup : null)) {
      throw badRequest(
        'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
      );
    }
    const snap = snapshotOf(e);
    e.reply_markup = newMarkup;
    markEdited(e, snap);
    return apiMessage(e);
  },

  deletemessage: (req, token, p) => {
    const chatId = requireChatId(p);
    const mid = toInt(p.message_id);
    if (!mid) throw badRequest('message identifier is not specified');
    const e = findLogEntry(token, chatId, mid);
    if (e) {
      e.deleted = true;
      e.seq = bump();
      if (e.pkg) server.removeBotMessage(e.pkg.updateId);
      return true;
    }
    const ck = chatKey(chatId);
    const userMsg = server.storage.userMessages.find(
      (u) => u.botToken === token && u.message && u.messageId === mid && chatKey(u.message.chat ? u.message.chat.id : u.message.from && u.message.from.id) === ck,
    );
    if (userMsg && !userMsg.deleted) {
      userMsg.deleted = true;
      return true;
    }
    throw badRequest('message to delete not found');
  },

  answercallbackquery: (req, token, p) => {
    const id = p.callback_query_id !== undefined ? String(p.callback_query_id) : '';
    const rec = state.callbacks.get(id);
    if (!rec || rec.token !== token || rec.answered) {
      throw badRequest('query is too old and response timeout expired or query ID is invalid');
    }
    const text = p.text !== undefined ? String(p.text) : null;
    if (text !== null && text.length > CALLBACK_ANSWER_TEXT_LIMIT) throw badRequest('MESSAGE_TOO_LONG');
    rec.answered = true;
    rec.answer = {
      text,
      show_alert: toBool(p.show_alert),
      url: p.url || null,
      cache_time: toInt(p.cache_time),
      t_ms: nowMs(),
    };
    return true;
  },

  setmycommands: (req, token, p) => {
    const cmds = maybeJson(p.commands);
    if (!Array.isArray(cmds)) throw badRequest('parameter "commands" must be an array');
    if (cmds.length > 100) throw badRequest('too many commands');
    for (const c of cmds) {
      if (!c || typeof c.command !== 'string' || !/^[a-z0-9_]{1,32}$/.test(c.command.replace(/^\//, ''))) {
        throw badRequest('BOT_COMMAND_INVALID');
      }
      if (typeof c.description !== 'string' || c.description.length < 1 || c.description.length > 256) {
        throw badRequest('BOT_COMMAND_DESCRIPTION_INVALID');
      }
    }
    commandsFor(token).set(
      scopeKey(p),
      cmds.map((c) => ({ command: c.command.replace(/^\//, ''), description: c.description })),
    );
    return true;
  },
  deletemycommands: (req, token, p) => {
    commandsFor(token).delete(scopeKey(p));
    return true;
  },
  getmycommands: (req, token, p) => commandsFor(token).get(scopeKey(p)) || [],

  sendchataction: (req, token, p) => {
    const chatId = requireChatId(p);
    if (!p.action) throw badRequest('action is empty');
    state.chatActions.push({ token, chat_id: chatId, action: p.action, t_ms: nowMs() });
    return true;
  },

  setchatmenubutton: (req, token, p) => {
    const mb = maybeJson(p.menu_button) || { type: 'default' };
    state.menuButtons.set(`${token}|${chatKey(p.chat_id) ?? ''}`, mb);
    return true;
  },
  getchatmenubutton: (req, token, p) => state.menuButtons.get(`${token}|${chatKey(p.chat_id) ?? ''}`) || { type: 'default' },

  setmydescription: () => true,
  setmyshortdescription: () => true,
  setmyname: () => true,

  getfile: (req, token, p) => {
    const f = state.files.get(String(p.file_id || ''));
    if (!f) throw badRequest('invalid file_id');
    return { file_id: f.file_id, file_unique_id: f.file_unique_id, file_size: f.file_size, file_path: f.file_path };
  },
};

// ---------------------------------------------------------------- express app
const app = express();
app.disable('x-powered-by');
app.use(express.json({ limit: '60mb' }));
app.use(express.urlencoded({ extended: true, limit: '60mb' }));
app.use(express.raw({ type: 'multipart/form-data', limit: '60mb' }));

function sendApi(res, rec, payload, status) {
  if (rec) rec.status = status;
  if (!res.headersSent && !res.writableEnded) res.status(status).json(payload);
}

function sendApiError(res, rec, err) {
  const code = err.code || 500;
  const body = { ok: false, error_code: code, description: err.description || String(err.message || err) };
  if (err.parameters) body.parameters = err.parameters;
  sendApi(res, rec, body, code);
}

app.all('/bot:token/:method', async (req, res) => {
  const { token, method } = req.params;
  if (req.method !== 'GET' && req.method !== 'POST') {
    sendApiError(res, null, new ApiError(405, `Method Not Allowed: ${req.method}`));
    return;
  }
  let body = req.body;
  let files = {};
  const ct = req.headers['content-type'] || '';
  if (/multipart\/form-data/i.test(ct)) {
    const parsed = parseMultipart(req.body, ct);
    body = parsed.fields;
    files = parsed.files;
  }
  if (!body || typeof body !== 'object' || Buffer.isBuffer(body)) body = {};
  const p = { ...req.query, ...body };
  req.params_ = p;
  req.files_ = files;

  const chatId = normChatId(p.chat_id);
  if (chatId !== null) p.chat_id = chatId;
  const rec = { method, chat_id: chatId, t_ms: nowMs(), status: null };
  state.calls.push(rec);

  if (!/^\d+:[\w-]+$/.test(token)) {
    sendApiError(res, rec, new ApiError(401, 'Unauthorized'));
    return;
  }
  const failure = matchFailure(method, chatId);
  if (failure) {
    rec.injected = true;
    sendApiError(res, rec, failureError(failure));
    return;
  }
  const impl = METHODS[method.toLowerCase()];
  if (!impl) {
    sendApiError(
      res,
      rec,
      new ApiError(500, `Internal Server Error: method '${method}' is not supported by the telegram emulator (tests/support/telegram_emulator/launcher.js)`),
    );
    return;
  }
  try {
    const result = await impl(req, token, p, res);
    if (result === undefined) {
      rec.status = 499; // client disconnected during long poll
      return;
    }
    sendApi(res, rec, { ok: true, result }, 200);
  } catch (err) {
    if (!(err instanceof ApiError)) {
      process.stderr.write(`emulator: ${method} crashed: ${err && err.stack}\n`);
    }
    sendApiError(res, rec, err instanceof ApiError ? err : new ApiError(500, `Internal Server Error: ${err}`));
  }
});

// file downloads: GET /file/bot<token>/<file_path>
app.get('/file/bot:token/*', (req, res) => {
  const filePath = req.params[0];
  for (const f of state.files.values()) {
    if (f.file_path === filePath) {
      res.status(200).type(f.mime_type || 'application/octet-stream').send(f.data);
      return;
    }
  }
  res.status(404).json({ ok: false, error_code: 404, description: 'Not Found' });
});

// ---------------------------------------------------------------- control routes
const ok = (res, result) => res.json({ ok: true, result });
const bad = (res, description) => res.status(400).json({ ok: false, description });

app.get('/_control/health', (req, res) => ok(res, { seq: state.seq, port: args.port }));

app.post('/_control/fail', (req, res) => {
  const b = req.body || {};
  if (!b.method) return bad(res, 'method is required ("*" = any bot method except getUpdates)');
  const code = Number(b.error_code || 429);
  let times = b.times === undefined || b.times === null ? 1 : Number(b.times);
  if (!Number.isFinite(times) || times <= 0) times = -1; // unlimited
  const rule = {
    method: String(b.method),
    chat_id: b.chat_id === undefined ? null : b.chat_id,
    error_code: code,
    retry_after: b.retry_after,
    description: b.description || null,
    times,
    hits: 0,
  };
  state.failures.push(rule);
  return ok(res, rule);
});

app.post('/_control/reset', (req, res) => {
  const b = req.body || {};
  state.failures = [];
  if (b.stats) {
    state.calls = [];
    state.chatActions = [];
  }
  return ok(res, true);
});

app.post('/_control/clear', (req, res) => {
  // wipe everything (for session-scoped emulators); ids keep increasing
  resetState();
  server.storage.userMessages = [];
  server.storage.botMessages = [];
  return ok(res, true);
});

app.get('/_control/stats', (req, res) => {
  const byMethod = {};
  const byChat = {};
  for (const c of state.calls) {
    byMethod[c.method] = (byMethod[c.method] || 0) + 1;
    if (c.chat_id !== null && c.chat_id !== undefined) {
      const k = String(c.chat_id);
      byChat[k] = (byChat[k] || 0) + 1;
    }
  }
  ok(res, {
    total: state.calls.length,
    by_method: byMethod,
    by_chat: byChat,
    calls: state.calls,
    failures: state.failures,
    chat_actions: state.chatActions,
  });
});

app.post('/_control/chatLog', (req, res) => {
  const b = req.body || {};
  if (!b.token) return bad(res, 'token is required');
  const ck = chatKey(b.chatId ?? b.chat_id);
  let list = state.botLog
    .filter((e) => e.token === b.token && (ck === null || e.chat_key === ck) && (b.includeDeleted || !e.deleted));
  if (Number.isInteger(b.last) && b.last > 0) list = list.slice(-b.last); // only the newest messages
  return res.json({ ok: true, result: list.map(logView), seq: state.seq });
});

app.post('/_control/callbackAnswers', (req, res) => {
  const b = req.body || {};
  const ck = chatKey(b.chatId ?? b.chat_id);
  const list = [...state.callbacks.values()]
    .filter((c) => c.token === b.token && (ck === null || chatKey(c.chat_id) === ck))
    .map((c) => ({
      callback_query_id: c.id,
      chat_id: c.chat_id,
      message_id: c.message_id,
      data: c.data,
      t_ms: c.t_ms,
      answered: c.answered,
      ...(c.answer || {}),
    }));
  return ok(res, list);
});

app.post('/_control/botState', (req, res) => {
  const b = req.body || {};
  const cmds = {};
  for (const [k, v] of commandsFor(b.token)) cmds[k] = v;
  const menu = {};
  for (const [k, v] of state.menuButtons) if (k.startsWith(`${b.token}|`)) menu[k.slice(b.token.length + 1)] = v;
  return ok(res, { commands: cmds, menu_buttons: menu, allowed_updates: state.allowedUpdates.get(b.token) || null });
});

// A user message of any kind (text, command, photo, sticker, document...).
// body: {token, message: {from, chat?, text?, entities?, photo?, ...}, files?: [{file_id, file_unique_id, data_b64, file_name?, mime_type?, kind?}]}
app.post('/_control/userMessage', (req, res) => {
  const b = req.body || {};
  if (!b.token) return bad(res, 'token is required');
  if (!b.message || !b.message.from) return bad(res, 'message.from is required');
  for (const f of b.files || []) {
    const data = Buffer.from(f.data_b64 || '', 'base64');
    state.fileCounter += 1;
    state.files.set(f.file_id, {
      file_id: f.file_id,
      file_unique_id: f.file_unique_id || `AQADuser${state.fileCounter}`,
      file_size: data.length,
      file_path: `${f.kind || 'documents'}/user_${state.fileCounter}${path.extname(f.file_name || '')}`,
      data,
      file_name: f.file_name,
      mime_type: f.mime_type,
      kind: f.kind || 'document',
    });
  }
  const message = { ...b.message };
  delete message.message_id;
  const upd = pushUserUpdate(b.token, 'message', message);
  const formatted = normalizeUserMessage(message, upd.messageId, upd.time);
  rememberChat(formatted);
  return ok(res, { update_id: upd.updateId, message_id: upd.messageId, seq: state.seq, message: formatted });
});

// A button press. body: {token, from, chat_id, message_id, data}
// The update carries the bot's real message as it is now (InaccessibleMessage if unknown/deleted).
app.post('/_control/userCallback', (req, res) => {
  const b = req.body || {};
  if (!b.token || !b.from) return bad(res, 'token and from are required');
  const chatId = b.chat_id ?? b.from.id;
  const e = b.message_id !== undefined && b.message_id !== null ? findLogEntry(b.token, chatId, b.message_id) : null;
  const message = e ? apiMessage(e) : { chat: chatObject(chatId), message_id: Number(b.message_id) || 0, date: 0 };
  server.callbackId += 1;
  const id = String(4000000000000000000n + BigInt(server.callbackId));
  const payload = {
    id,
    from: { is_bot: false, ...b.from },
    message,
    chat_instance: chatInstanceFor(chatId),
  };
  if (b.data !== undefined && b.data !== null) payload.data = String(b.data);
  const upd = pushUserUpdate(b.token, 'callback', payload);
  state.callbacks.set(id, {
    id,
    token: b.token,
    chat_id: chatId,
    message_id: message.message_id,
    data: payload.data,
    t_ms: nowMs(),
    answered: false,
    answer: null,
  });
  return ok(res, { update_id: upd.updateId, callback_query_id: id, seq: state.seq, accessible: !!e });
});

// Everything else (the package's test-client routes) goes to the package's app.
app.use(server.webServer);

// register callbacks created through the package's own /sendCallback route too
const origAddUserCallback = server.addUserCallback.bind(server);
server.addUserCallback = async (cq) => {
  const id = String(server.callbackId);
  const chatId = cq && cq.message && cq.message.chat ? cq.message.chat.id : cq && cq.from && cq.from.id;
  state.callbacks.set(id, {
    id,
    token: cq.botToken,
    chat_id: chatId,
    message_id: cq.message && cq.message.message_id,
    data: cq.data,
    t_ms: nowMs(),
    answered: false,
    answer: null,
  });
  return origAddUserCallback(cq);
};

// the package's start() serves `this.webServer`: swap in our front app
server.webServer = app;

// ---------------------------------------------------------------- lifecycle
let stopping = false;
function shutdown(code) {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(code), 500);
  hard.unref();
  server.stop().finally(() => process.exit(code));
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
if (args.watchStdin) {
  // exit when the parent (the Python test process) closes our stdin or dies
  process.stdin.on('end', () => shutdown(0));
  process.stdin.on('error', () => shutdown(0));
  process.stdin.resume();
}

server
  .start()
  .then(() => {
    process.stdout.write(`READY ${args.port}\n`);
  })
  .catch((err) => {
    process.stderr.write(`emulator: failed to listen on ${args.host}:${args.port}: ${err && err.message}\n`);
    process.exit(1);
  });
