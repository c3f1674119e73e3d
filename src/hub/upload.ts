// Uploads that become flists (hub-api.md §7 upload, §8.1). Filled in by the hub issue.
import type { Hub } from './app';

export function uploadRoutes(_hub: Hub): void {}
