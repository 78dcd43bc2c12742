// Reads a JSON array of base64-encoded RFC 5322 messages on stdin and writes,
// for each, what Nodemailer's mailparser makes of it (a MIME parser written
// independently of Python's email package): the decoded subject, addresses,
// List-* headers, Message-ID, text and HTML bodies, and the raw header lines.
// Used by tests/mailparser_check.py.
import { simpleParser } from 'mailparser';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const messages = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const plain = (value) => {
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [k, plain(v)]));
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
};
const addresses = (field) => (field ? [].concat(field).flatMap((f) => f.value) : []);

const out = [];
for (const encoded of messages) {
  const parsed = await simpleParser(Buffer.from(encoded, 'base64'), { skipImageLinks: true });
  out.push({
    subject: parsed.subject ?? null,
    from: addresses(parsed.from),
    to: addresses(parsed.to),
    messageId: parsed.messageId ?? null,
    date: parsed.date ? parsed.date.toISOString() : null,
    list: plain(parsed.headers.get('list') ?? {}),
    headerLines: parsed.headerLines.map((h) => ({ key: h.key, line: h.line })),
    text: parsed.text ?? null,
    html: parsed.html === false ? null : parsed.html ?? null,
  });
}
process.stdout.write(JSON.stringify(out));
