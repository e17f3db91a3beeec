// Decode server frames exactly as realtime-js 2.119.0 does, for tests/test_codec_clients.py.
// stdin: a JSON array of {"text": "..."} or {"hex": "..."}; stdout: a JSON array of
// {"ok": true, "topic", "event", "ref", "join_ref", "payload"} or {"ok": false, "error"}.
// Text objects go through JSON.parse (RealtimeClient's 1.0.0 defaultDecode), arrays and binary frames
// through lib/serializer.ts (2.0.0). "ok" means onConnMessage would route it: decode returned a message
// with a string topic and event, and a phx_reply has the payload Push.matchReceive destructures.
import { createRequire } from 'node:module'
const require = createRequire(import.meta.url)
const Serializer = require('@supabase/realtime-js/dist/main/lib/serializer.js').default

const input = JSON.parse(require('node:fs').readFileSync(0, 'utf8'))
const serializer = new Serializer()
const out = input.map((frame) => {
  try {
    let msg
    if (frame.hex !== undefined) {
      const buf = Buffer.from(frame.hex, 'hex')
      const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength)
      serializer.decode(ab, (m) => { msg = m })
    } else if (frame.text.trimStart().startsWith('[')) {
      serializer.decode(frame.text, (m) => { msg = m })
    } else {
      msg = JSON.parse(frame.text)
    }
    const { topic, event, payload, ref, join_ref } = msg  // throws on undefined, as onConnMessage does
    if (typeof topic !== 'string' || typeof event !== 'string') return { ok: false, error: 'no topic/event' }
    if (event === 'phx_reply' && (payload === null || payload === undefined)) return { ok: false, error: 'reply without payload' }
    const plain = (v) => (v instanceof ArrayBuffer ? { hex: Buffer.from(v).toString('hex') } : v)
    const p = payload && typeof payload === 'object' && 'payload' in payload ? { ...payload, payload: plain(payload.payload) } : plain(payload)
    return { ok: true, topic, event, ref: ref ?? null, join_ref: join_ref ?? null, payload: p ?? null }
  } catch (e) {
    return { ok: false, error: String(e) }
  }
})
process.stdout.write(JSON.stringify(out))
