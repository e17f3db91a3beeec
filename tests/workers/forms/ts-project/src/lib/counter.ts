import type { KVNamespaceLike } from "./types";

// Counts upgrades in KV, with the time of the last one as the key's metadata.
export async function countUpgrade(kv: KVNamespaceLike): Promise<number> {
  const seen = Number((await kv.get("upgrades")) ?? "0") + 1;
  await kv.put("upgrades", String(seen), { metadata: { last: Date.now() } });
  return seen;
}
