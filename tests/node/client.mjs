// realtime-js (the Realtime client inside supabase-js) in Node, driven once through a relay.
//
//   SUPABASE_ANON_KEY=... node client.mjs ws://127.0.0.1:8080/realtime/v1 [channel]
//
// Connects with vsn 2.0.0 (realtime-js' default), joins `channel` with broadcast.self, sends one
// broadcast (realtime-js encodes it as a binary kind-3 frame), waits for its own broadcast to come back
// (the server sends it as a binary kind-4 frame) and for one answered heartbeat, then disconnects.
// Prints one JSON object per line on stdout:
//   {"event":"status","status":"SUBSCRIBED"}   every subscribe() callback (err message if any)
//   {"event":"broadcast","payload":{...}}      a broadcast received on the channel
//   {"event":"heartbeat","status":"ok"}        heartbeat callback statuses (sent, ok, timeout, ...)
//   {"event":"done","ok":true}                 last line; exit code 0 when everything arrived
// Exit codes: 0 done, 1 the channel failed (CHANNEL_ERROR/TIMED_OUT/CLOSED before done), 2 bad usage,
// 3 the safety net (RT_CLIENT_SAFETY_S, default 30 s) fired: something never arrived.
//
// Node 20 has no global WebSocket, so the `ws` package is passed as the transport.

import { RealtimeClient } from '@supabase/realtime-js'
import WebSocket from 'ws'

const [, , endpoint, channelName = 'node-room'] = process.argv
const apikey = process.env.SUPABASE_ANON_KEY
if (!endpoint || !apikey) {
  process.stderr.write('usage: SUPABASE_ANON_KEY=KEY node client.mjs ws://HOST:PORT/realtime/v1 [channel]\n')
  process.exit(2)
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

let finished = false
let gotBroadcast = false
let gotHeartbeat = false

const client = new RealtimeClient(endpoint, {
  params: { apikey },
  transport: WebSocket,
  heartbeatIntervalMs: 1000,
  // No reconnects during the run: a failure should be reported once, not retried.
  reconnectAfterMs: () => 60_000,
  heartbeatCallback: (status) => {
    out({ event: 'heartbeat', status })
    if (status === 'ok') {
      gotHeartbeat = true
      maybeDone()
    }
  },
})

async function finish(ok, code) {
  if (finished) return
  finished = true
  clearTimeout(safety)
  out({ event: 'done', ok })
  try {
    await client.removeAllChannels()
    await client.disconnect()
  } catch (e) {
    out({ event: 'error', message: String(e) })
  }
  process.exit(code)
}

function maybeDone() {
  if (gotBroadcast && gotHeartbeat) finish(true, 0)
}

const safetyS = Number(process.env.RT_CLIENT_SAFETY_S || 30)
const safety = setTimeout(() => {
  out({ event: 'safety-net', seconds: safetyS, broadcast: gotBroadcast, heartbeat: gotHeartbeat })
  finish(false, 3)
}, safetyS * 1000)

const channel = client.channel(channelName, { config: { broadcast: { self: true } } })
channel.on('broadcast', { event: 'cursor' }, (msg) => {
  out({ event: 'broadcast', payload: msg.payload, type: msg.type, name: msg.event })
  gotBroadcast = true
  maybeDone()
})
channel.subscribe(async (status, err) => {
  out({ event: 'status', status, ...(err ? { error: String(err.message ?? err) } : {}) })
  if (status === 'SUBSCRIBED') {
    const res = await channel.send({ type: 'broadcast', event: 'cursor', payload: { x: 1, from: 'node' } })
    out({ event: 'sent', result: res })
  } else if (!finished) {
    finish(false, 1)
  }
})
