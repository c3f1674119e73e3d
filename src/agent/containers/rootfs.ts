// Container root filesystems come from the node's mount service (src/mountd): a shared read-only
// lower per flist with an overlay per container. This re-export stays for src/hub/web.ts, which
// imports repoRoot from here (the hub engineer moves that import to src/lib/paths).
export { repoRoot } from '../../lib/paths';
