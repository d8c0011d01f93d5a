// Reads a passphrase from the terminal without echo (raw mode), for encrypted repositories
// when FLEECE_PASSWORD is not set. Refuses when stdin is not a TTY rather than hanging.

import { UsageError } from '../core/errors.js';

export async function promptPassword(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new UsageError('a passphrase is needed: set FLEECE_PASSWORD or FLEECE_KEY_FILE (stdin is not a terminal)');
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  let text = '';
  try {
    return await new Promise<string>((resolve, reject) => {
      const onData = (data: Buffer): void => {
        for (const ch of data.toString('utf8')) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.off('data', onData);
            resolve(text);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            reject(new UsageError('passphrase entry cancelled'));
            return;
          }
          if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
          else text += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}
