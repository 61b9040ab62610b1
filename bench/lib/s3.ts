// `bench/registry.ts --store s3`: one Ceph RGW for the whole run, and
// launchers that put Kiln and distribution 2.8.2 on it, each launch on a
// fresh bucket (an empty registry) that is emptied and removed when that
// server stops (the RGW keeps its data in RAM).
import {
  AbortMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startRgw, type Rgw } from '../../test/helpers/rgw.js';
import { spawnTracked } from './proc.js';
import { distributionServer, kilnLauncher, type Launcher, type Server } from './servers.js';

export interface BenchS3 {
  rgw: Rgw;
  kiln: Launcher;
  distribution: Launcher;
  stop(): Promise<void>;
}

/** `kilnEnv`: more environment for each Kiln start (e.g. a fresh KILN_DATABASE_URL). */
export async function startBenchS3(options: { kilnEnv?: () => Promise<Record<string, string>> } = {}): Promise<BenchS3> {
  // Room for a bigblob push per side plus what RGW's garbage collection has not freed yet.
  const rgw = await startRgw({ memstoreBytes: 16 * 1024 ** 3 });
  const client = rgw.client();
  const withBucket =
    (launch: (bucket: string) => Launcher): Launcher =>
    async (label, dataDir, port) => {
      const bucket = await rgw.createBucket('bench');
      const server = await launch(bucket)(label, dataDir, port);
      return {
        ...server,
        async stop() {
          await server.stop();
          await removeBucket(client, bucket);
        },
      };
    };
  return {
    rgw,
    kiln: withBucket((bucket) => async (label, dataDir, port) => kilnLauncher(rgw.kilnEnv(bucket, (await options.kilnEnv?.()) ?? {}))(label, dataDir, port)),
    distribution: withBucket((bucket) => distributionOnS3(rgw, bucket)),
    async stop() {
      client.destroy();
      await rgw.stop();
    },
  };
}

/**
 * distribution's S3 driver on the same RGW, otherwise configured as the
 * filesystem anchor (deletes enabled, no cache, logging to a file). It
 * redirects blob GETs to presigned URLs by default, as Kiln does.
 */
function distributionOnS3(rgw: Rgw, bucket: string): Launcher {
  return async (label, dataDir, port) => {
    const host = `127.0.0.1:${port}`;
    await mkdir(dataDir, { recursive: true });
    const config = path.join(dataDir, 'config.yml');
    await writeFile(
      config,
      [
        'version: 0.1',
        'storage:',
        '  s3:',
        `    accesskey: ${rgw.accessKeyId}`,
        `    secretkey: ${rgw.secretAccessKey}`,
        `    region: ${rgw.region}`,
        `    regionendpoint: ${rgw.endpoint}`,
        `    bucket: ${bucket}`,
        '    secure: false',
        '    v4auth: true',
        '    rootdirectory: /',
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: ${host}`,
        '',
      ].join('\n'),
    );
    const logFile = path.join(dataDir, 'registry.log');
    const log = openSync(logFile, 'a');
    // The Go SDK refuses to start with a CA bundle from the environment and its own transport; the RGW is plain HTTP anyway.
    const child = spawnTracked('docker-registry', ['serve', config], log, log, { AWS_CA_BUNDLE: '' });
    closeSync(log);
    return distributionServer(label, host, child, dataDir, () => readFileSync(logFile, 'utf8').slice(-2000));
  };
}

async function removeBucket(client: S3Client, bucket: string): Promise<void> {
  for (;;) {
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    for (const u of uploads.Uploads ?? []) await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key!, UploadId: u.UploadId! }));
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    const keys = (page.Contents ?? []).map((o) => ({ Key: o.Key! }));
    if (keys.length === 0 && !uploads.IsTruncated) break;
    if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
}

export type { Server };
