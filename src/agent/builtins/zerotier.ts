// zerotier.* (core0-protocol.md §9.10, and the later zerotier.info): the original ran
// zerotier-cli against a zerotier-one daemon it supervised. This node runs no such daemon and
// reaches no ZeroTier network, so every call is refused as unavailable, naming why (after its
// arguments were checked), rather than answered UNKNOWN_CMD.
import { args, str } from '../args';
import { CommandError, type Handler } from '../types';
import { withStderr } from './disk';

const networkArgs = args({ network: str });
const none = args({});

function unavailable(): never {
  throw new CommandError('unavailable', 'zerotier: no zerotier-one daemon runs on this node and no ZeroTier network is reachable from it');
}

/** A ZeroTier network id is 16 hex digits. */
function network(raw: unknown): string {
  const { network: n } = networkArgs(raw);
  if (!/^[0-9a-fA-F]{16}$/.test(n)) throw new CommandError('invalid', `argument 'network': '${n}' is not a ZeroTier network id (16 hex digits)`);
  return n;
}

export function zerotierHandlers(): Record<string, Handler> {
  const h: Record<string, Handler> = {
    'zerotier.join': (raw) => (network(raw), unavailable()),
    'zerotier.leave': (raw) => (network(raw), unavailable()),
    'zerotier.list': (raw) => (none(raw), unavailable()),
    'zerotier.info': (raw) => (none(raw), unavailable()),
  };
  return Object.fromEntries(Object.entries(h).map(([k, f]) => [k, withStderr(f)]));
}
