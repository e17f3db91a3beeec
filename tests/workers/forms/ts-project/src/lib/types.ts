export interface Env {
  SUPABASE_URL: string;
  ALLOWED_ORIGINS: string;
  SHARED_SECRET?: string;
  DEBUG_TOKEN?: string;
  LIMITS: { maxUpgrades: number; paths: string[] };
  CACHE: KVNamespaceLike;
}

export interface KVNamespaceLike {
  get(key: string): Promise<string | null>;
  put(key: string, value: string, options?: { metadata?: unknown; expirationTtl?: number }): Promise<void>;
  getWithMetadata(key: string): Promise<{ value: string | null; metadata: unknown }>;
  list(options?: { prefix?: string }): Promise<{ keys: { name: string }[] }>;
  delete(key: string): Promise<void>;
}
