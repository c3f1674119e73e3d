// POST /api/flist/me/docker (hub-api.md §7, §8.4): an uploaded `docker save` or OCI image
// layout tarball becomes an flist. The upload goes to a temp file first (layers are read by
// offset); pulling from a registry is not offered.
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import express, { type NextFunction, type Request, type Response, Router } from 'express';
import multer from 'multer';
import { G8osError, invalid, tooLarge } from '../errors';
import { backendFor } from '../flist/backend';
import { convertImage } from '../flist/oci';
import type { BlockStore } from '../store/types';
import { type AuthedRequest, errorAnswer, route, success } from './http';
import type { Job, Jobs } from './progress';
import { publishTree } from './publish';
import { flistName, type Registry } from './registry';

interface Upload {
  path?: string;
  /** the handler owns the file from here on (a client leaving mid-conversion must not pull it away) */
  converting: boolean;
  job: Job;
}

const rm = (p: string | undefined): Promise<void> => (p ? fs.promises.rm(p, { force: true }) : Promise.resolve());

export interface DockerDeps {
  registry: Registry;
  store: BlockStore;
  jobs: Jobs;
  publicUrl: string;
  maxUpload: number;
  maxExpanded: number;
}

/** POST /docker (mount at /api/flist/me behind requireUser). */
export function dockerRouter(deps: DockerDeps): Router {
  const { registry, jobs } = deps;
  const uploads = new WeakMap<Request, Upload>();

  const storage: multer.StorageEngine = {
    _handleFile(req, file, cb) {
      const state = uploads.get(req)!;
      const dest = registry.tempPath('docker-image');
      state.path = dest;
      const out = fs.createWriteStream(dest);
      pipeline(file.stream, out).then(
        () => cb(null, { path: dest, size: out.bytesWritten }),
        (e: Error) => void rm(dest).finally(() => cb(e)),
      );
    },
    _removeFile(_req, file, cb) {
      void rm(file.path).finally(() => cb(null));
    },
  };
  const multipart = multer({ storage, limits: { fileSize: deps.maxUpload, files: 1, fields: 16, fieldSize: 64 * 1024 } }).single('file');

  const receive = (req: Request, res: Response, next: NextFunction): void => {
    // a job from the start, so /listen/<id> can follow the conversion (X-Job-Id as for uploads)
    let job: Job;
    try {
      job = jobs.forRequest(req, res);
    } catch (e) {
      return next(e);
    }
    job.update('Receiving image', 0);
    const state: Upload = { converting: false, job };
    uploads.set(req, state);
    // an aborted or refused upload leaves nothing behind
    res.on('close', () => {
      if (!state.converting) void rm(state.path);
      job.fail('the upload ended before the image was converted'); // no-op when finished
    });
    multipart(req, res, (err?: unknown) => {
      const refused = err ? uploadError(err as Error, deps.maxUpload) : undefined;
      if (refused) job.fail(refused.message);
      next(refused);
    });
  };

  const router = Router();
  router.post(
    '/docker',
    receive,
    express.urlencoded({ extended: false, limit: '64kb' }),
    express.json({ limit: '64kb' }),
    route(async (req: AuthedRequest, res) => {
      const state = uploads.get(req)!;
      state.converting = true;
      let payload: unknown;
      try {
        const body = (req.body ?? {}) as Record<string, unknown>;
        if (!req.file) {
          if (body.image !== undefined) {
            throw invalid('pulling images from a registry is not supported on this hub: upload a docker save or OCI layout tarball');
          }
          throw invalid('missing docker image: upload a docker save or OCI layout tarball as multipart field "file"');
        }
        if (body.name !== undefined && typeof body.name !== 'string') throw invalid('name must be a string');
        const wanted = body.name ? flistName(body.name as string) : undefined;
        const image = await convertImage(req.file.path, {
          store: deps.store, maxExpandedBytes: deps.maxExpanded, tmpDir: registry.tmpDir,
          onProgress: (message, pct) => state.job.update(message, Math.min(pct, 95)),
        });
        const name = wanted ?? flistName(image.name);
        await publishTree(registry, req.user!, name, image.tree, { ...image.metadata, backend: backendFor(deps.publicUrl) });
        payload = { name, files: image.stats, url: `${deps.publicUrl}/${req.user}/${name}`, job: state.job.id };
        state.job.update('Image ready', 100);
        state.job.finish({ status: 'success', file: name, flist: image.stats, timing: {} });
      } catch (e) {
        state.job.fail(errorAnswer(e).message);
        throw e;
      } finally {
        await rm(state.path);
      }
      success(res, payload); // after the cleanup: a client that sees the answer sees no temp files
    }),
  );
  return router;
}

function uploadError(err: Error, maxUpload: number): G8osError {
  if (err instanceof multer.MulterError) {
    if (err.code === 'LIMIT_FILE_SIZE') return tooLarge(`upload is larger than this hub accepts (${maxUpload} bytes)`);
    if (err.code === 'LIMIT_UNEXPECTED_FILE') return invalid(`unexpected file field ${JSON.stringify(err.field)}: send the image tarball as field "file"`);
    return invalid(`bad multipart upload: ${err.message}`);
  }
  return invalid(`upload failed: ${err.message}`);
}
