// POST /api/flist/me/docker (hub-api.md §7, §8.4): an uploaded `docker save` or OCI image
// layout tarball becomes an flist. The upload goes to a temp file first (layers are read by
// offset); pulling from a registry is not offered.
import fs from 'node:fs';
import { pipeline } from 'node:stream/promises';
import express, { type NextFunction, type Request, type Response } from 'express';
import multer from 'multer';
import { backendFor } from '../flist/backend';
import { BuildError } from '../flist/builder';
import { writeFlist } from '../flist/writer';
import { type AuthedRequest, type Hub, requireUser, route, success } from './app';
import { type Job, jobsOf } from './jobs';
import { convertImage, ImageError } from './oci';
import { flistName, HubError } from './registry';

interface Upload {
  path?: string;
  /** the handler owns the file from here on (a client leaving mid-conversion must not pull it away) */
  converting: boolean;
  job: Job;
}

const rm = (p: string | undefined): Promise<void> => (p ? fs.promises.rm(p, { force: true }) : Promise.resolve());

export function dockerRoutes(hub: Hub): void {
  const { registry, config } = hub;
  const jobs = jobsOf(hub);
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
  const multipart = multer({ storage, limits: { fileSize: config.maxUpload, files: 1, fields: 16, fieldSize: 64 * 1024 } }).single('file');

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
      const refused = err ? uploadError(err as Error, config.maxUpload) : undefined;
      if (refused) job.fail(refused.message);
      next(refused);
    });
  };

  hub.app.post(
    '/api/flist/me/docker',
    requireUser(hub),
    receive,
    express.urlencoded({ extended: false, limit: '64kb' }),
    express.json({ limit: '64kb' }),
    route(async (req: AuthedRequest, res) => {
      const state = uploads.get(req)!;
      state.converting = true;
      const out = registry.tempPath('docker-flist');
      let payload: unknown;
      try {
        const body = (req.body ?? {}) as Record<string, unknown>;
        if (!req.file) {
          if (body.image !== undefined) {
            throw new HubError(400, 'pulling images from a registry is not supported on this hub: upload a docker save or OCI layout tarball');
          }
          throw new HubError(400, 'missing docker image: upload a docker save or OCI layout tarball as multipart field "file"');
        }
        if (body.name !== undefined && typeof body.name !== 'string') throw new HubError(400, 'name must be a string');
        const wanted = body.name ? flistName(body.name as string) : undefined;
        const image = await convertImage(req.file.path, {
          store: hub.store, maxExpandedBytes: config.maxExpanded, tmpDir: registry.tmpDir,
          onProgress: (message, pct) => state.job.update(message, Math.min(pct, 95)),
        });
        const name = wanted ?? flistName(image.name);
        await writeFlist(image.tree, out, { ...image.metadata, backend: backendFor(config.publicUrl) }, { tmpDir: hub.registry.tmpDir });
        await registry.publish(req.user!, name, out);
        payload = { name, files: image.stats, url: `${config.publicUrl}/${req.user}/${name}`, job: state.job.id };
        state.job.update('Image ready', 100);
        state.job.finish({ status: 'success', file: name, flist: image.stats, timing: {} });
      } catch (e) {
        const err = e instanceof ImageError || e instanceof BuildError ? new HubError(400, e.message) : e;
        state.job.fail(err instanceof HubError ? err.message : 'internal error');
        throw err;
      } finally {
        await rm(out);
        await rm(state.path);
      }
      success(res, payload); // after the cleanup: a client that sees the answer sees no temp files
    }),
  );
}

function uploadError(err: Error, maxUpload: number): HubError {
  if (err instanceof multer.MulterError) {
    if (err.code === 'LIMIT_FILE_SIZE') return new HubError(413, `upload is larger than this hub accepts (${maxUpload} bytes)`);
    if (err.code === 'LIMIT_UNEXPECTED_FILE') return new HubError(400, `unexpected file field ${JSON.stringify(err.field)}: send the image tarball as field "file"`);
    return new HubError(400, `bad multipart upload: ${err.message}`);
  }
  return new HubError(400, `upload failed: ${err.message}`);
}
