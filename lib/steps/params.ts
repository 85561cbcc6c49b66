/**
 * Parameter types the step packs share. Every parameter is checked by its
 * real type before anything runs: a stray newline is refused, not sent.
 */
import { z } from 'zod';

export const hostName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/, 'must be a host name of the inventory');
export const unitName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9:_.@\\-]{0,250}$/, 'must be a systemd unit name');
export const absolutePath = z
  .string()
  .regex(/^\/[^\x00-\x1f\x7f]*$/, 'must be an absolute path without control characters')
  .refine((p) => !p.split('/').includes('..'), 'must not contain ..');
export const userName = z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'must be a user name');
export const port = z.number().int().min(1).max(65535);
export const dnsName = z
  .string()
  .regex(
    /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})(?:\.[A-Za-z0-9_-]{1,63})*\.?$/,
    'must be a DNS name',
  );
