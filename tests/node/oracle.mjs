// realtime-js as the oracle of "what the user saw": it joins the channels a captured client joined, against
// a replay of the capture's server side (through rtproxy), and reports every status its subscribe callbacks
// give, with the error message (supabase-js of 2026-04 on: "socket closed: <code> (<reason>)" for a
// connection-level CHANNEL_ERROR, lib/normalizeChannelError.js).
//
//   SUPABASE_ANON_KEY=... node oracle.mjs ws://127.0.0.1:8080/realtime/v1 SPEC_JSON
//
// SPEC_JSON: {"params": {...}, "scale": S, "heartbeatMs": H, "channels": [{"topic": "realtime:room1", "config": {...},
// "postgres_changes": [{"event": "*", "schema": "public", "table": "t", "filter": "..."}]}]}
// The client runs with realtime-js' own defaults divided by S (join timeout 10 s, heartbeat 25 s,
// reconnects after 1/2/5/10 s: DEFAULT_TIMEOUT in lib/constants.js, CONNECTION_TIMEOUTS and
// RECONNECT_INTERVALS in RealtimeClient.js), so a capture replayed at --speed S meets the same timers;
// heartbeatMs, when given, is the heartbeat interval (it follows the replay's own scale).
// Prints one JSON object per line: {"event":"status","topic":...,"status":...,"error"?:...}; ends (exit 0)
// when stdin closes.

import { RealtimeClient } from '@supabase/realtime-js'
import WebSocket from 'ws'

const [, , endpoint, specText] = process.argv
const apikey = process.env.SUPABASE_ANON_KEY
if (!endpoint || !specText || !apikey) {
  process.stderr.write('usage: SUPABASE_ANON_KEY=KEY node oracle.mjs ws://HOST:PORT/realtime/v1 SPEC_JSON\n')
  process.exit(2)
}
const spec = JSON.parse(specText)
const scale = spec.scale || 1
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const RECONNECT_INTERVALS = [1000, 2000, 5000, 10000]

const client = new RealtimeClient(endpoint, {
  params: { apikey, ...(spec.params || {}) },
  transport: WebSocket,
  timeout: 10000 / scale,
  heartbeatIntervalMs: spec.heartbeatMs || 25000 / scale,
  reconnectAfterMs: (tries) => (RECONNECT_INTERVALS[tries - 1] || 10000) / scale,
})

for (const ch of spec.channels) {
  const channel = client.channel(ch.topic.replace(/^realtime:/, ''), { config: ch.config || {} })
  for (const pc of ch.postgres_changes || []) {
    channel.on('postgres_changes', pc, () => {})
  }
  channel.subscribe((status, err) => {
    out({ event: 'status', topic: ch.topic, status, ...(err ? { error: String(err.message ?? err) } : {}) })
  })
}

process.stdin.on('data', () => {})
process.stdin.on('end', async () => {
  try {
    await client.removeAllChannels()
    await client.disconnect()
  } catch (e) {
    out({ event: 'error', message: String(e) })
  }
  process.exit(0)
})
