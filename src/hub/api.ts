// The 0-hub JSON API (hub-api.md §6, §7). Filled in by the hub issue.
import type { Hub } from './app';

export function apiRoutes(_hub: Hub): void {}
