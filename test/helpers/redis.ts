// A throw-away real redis-server on a free loopback port, for tests (harness/redis.ts).
export { freePort } from '../../harness/ports';
export { REDIS_SERVER, type RedisServer, startRedis } from '../../harness/redis';
