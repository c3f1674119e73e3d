// What goes wrong reading an image tarball: the client's fault (invalid, a 400), or over a
// limit (too_large, a 413).
import { type ErrorKind, G8osError } from '../../errors';

export class ImageError extends G8osError {
  constructor(message: string, kind: ErrorKind = 'invalid') {
    super(kind, message);
  }
}
