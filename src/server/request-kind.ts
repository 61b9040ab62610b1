// Which deadline a request falls under, from its method and path. Pure.
//
// - `upload`: a blob body (or a build's source archive) streams in; it may
//   take long, so it must only keep a minimum rate;
// - `download`: a blob or disk streams out, same rule;
// - `follow`: a log followed with Server-Sent Events stays open and may be
//   silent for long: no deadline;
// - `plain`: everything else; its whole body must arrive within the request timeout.

export type RequestKind = 'upload' | 'download' | 'follow' | 'plain';

const UPLOAD_PATH = /^\/v2\/.+\/blobs\/uploads\/[^/]*$/;
const BLOB_PATH = /^\/v2\/.+\/blobs\/[^/]+$/;
const DISK_PATH = /^\/api\/v1\/images\/.+\/disk$/;
const LOGS_PATH = /^\/api\/v1\/builds\/[^/]+\/logs$/;
/** As src/builds/http.ts reads `?follow=`. */
const FOLLOW_VALUES = ['true', '1', 'yes'];

export function requestKind(method: string, url: string): RequestKind {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  if (method === 'PATCH' || method === 'PUT' || method === 'POST') {
    if (UPLOAD_PATH.test(path)) return 'upload';
    if (method === 'POST' && path === '/api/v1/builds') return 'upload';
    return 'plain';
  }
  if (method === 'GET') {
    if (BLOB_PATH.test(path) && !UPLOAD_PATH.test(path)) return 'download';
    if (DISK_PATH.test(path)) return 'download';
    if (LOGS_PATH.test(path) && FOLLOW_VALUES.includes((new URLSearchParams(query).get('follow') ?? '').toLowerCase())) return 'follow';
  }
  return 'plain';
}
