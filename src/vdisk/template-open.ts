// A template source from its address: `flist:<flist>[#<store>]` (a raw image inside an flist),
// else a storage cluster (comma-separated servers).
import { DEFAULT_TEMPLATE_TIMEOUT_MS, openTemplate, type TemplateSource } from './template';
import { FlistTemplate } from './template-flist';

export function templateSource(source: string, blockSize: number, timeoutMs = DEFAULT_TEMPLATE_TIMEOUT_MS): TemplateSource {
  if (source.startsWith('flist:')) {
    const rest = source.slice('flist:'.length);
    const hash = rest.indexOf('#');
    return hash < 0 ? new FlistTemplate(rest, undefined, blockSize, timeoutMs) : new FlistTemplate(rest.slice(0, hash), rest.slice(hash + 1), blockSize, timeoutMs);
  }
  return openTemplate(source, timeoutMs);
}
