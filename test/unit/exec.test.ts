// Checks src/cli/exec.ts with real processes (/bin/sh): order of the
// run-to-completion entries, failure stops everything, if-candidate skipping,
// exit-code propagation, signal forwarding, and start failures. Files are
// written only under one temp dir, removed at the end; any app still running
// at the end is killed by its PID.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { runExec, type ExecOptions, type SupervisedApp } from '../../src/cli/exec.js';

const root = mkdtempSync(join(tmpdir(), 'exec-test-'));
/** Apps this file started that have not exited yet (a PID is never signalled after its exit). */
const running = new Set<SupervisedApp>();
after(() => {
  for (const app of running) app.signal('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

let counter = 0;
function freshDir(): string {
  const dir = join(root, `case-${++counter}`);
  mkdirSync(dir);
  return dir;
}

interface Logged { level: string; obj: object; msg: string }
function options(dir: string, extra: Partial<ExecOptions> = {}): ExecOptions & { logged: Logged[] } {
  const logged: Logged[] = [];
  const log = {
    info: (obj: object, msg: string) => { logged.push({ level: 'info', obj, msg }); },
    warn: (obj: object, msg: string) => { logged.push({ level: 'warn', obj, msg }); },
    error: (obj: object, msg: string) => { logged.push({ level: 'error', obj, msg }); },
  };
  return { isCandidate: true, log, env: { DIR: dir }, logged, ...extra };
}

async function run(...args: Parameters<typeof runExec>): Promise<SupervisedApp> {
  const app = await runExec(...args);
  assert.ok(app, 'expected an application handle');
  running.add(app);
  void app.exited.then(() => running.delete(app));
  return app;
}

async function waitForFile(path: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${path}`);
    await sleep(10);
  }
}

const e = (cmd: string, ifCandidate = false) => ({ cmd, ifCandidate });

describe('runExec', () => {
  test('no entries → undefined', async () => {
    assert.equal(await runExec([], options(freshDir())), undefined);
  });

  test('runs entries in order with env; the last reads what the first wrote', async () => {
    const dir = freshDir();
    const app = await run([
      e('echo migrated > "$DIR/step1"'),
      e('cat "$DIR/step1" > "$DIR/step2"'),
      e('cat "$DIR/step2" > "$DIR/app" && exit 0'),
    ], options(dir));
    assert.ok(app.pid > 0);
    assert.equal(await app.exited, 0);
    assert.equal(readFileSync(join(dir, 'app'), 'utf8'), 'migrated\n');
  });

  test('a failing entry rejects naming command and code; later entries and the app never start', async () => {
    const dir = freshDir();
    const opts = options(dir);
    await assert.rejects(
      runExec([e('exit 5'), e('touch "$DIR/second"'), e('touch "$DIR/app"')], opts),
      (err: Error) => err.message.includes('"exit 5"') && err.message.includes('code 5'),
    );
    assert.equal(existsSync(join(dir, 'second')), false);
    assert.equal(existsSync(join(dir, 'app')), false);
    assert.ok(opts.logged.some((l) => l.level === 'error'));
  });

  test('an entry killed by a signal rejects naming the signal', async () => {
    const dir = freshDir();
    await assert.rejects(
      runExec([e('kill -KILL $$'), e('touch "$DIR/app"')], options(dir)),
      /killed by SIGKILL/,
    );
    assert.equal(existsSync(join(dir, 'app')), false);
  });

  test('ifCandidate entries are skipped (and logged) on a non-candidate, run on a candidate', async () => {
    const dir = freshDir();
    const opts = options(dir, { isCandidate: false });
    const app = await run([e('touch "$DIR/a"', true), e('touch "$DIR/b"'), e('touch "$DIR/app"')], opts);
    assert.equal(await app.exited, 0);
    assert.equal(existsSync(join(dir, 'a')), false);
    assert.equal(existsSync(join(dir, 'b')), true);
    assert.equal(existsSync(join(dir, 'app')), true);
    assert.ok(opts.logged.some((l) => /skipping/.test(l.msg) && (l.obj as { cmd?: string }).cmd === 'touch "$DIR/a"'));

    const dir2 = freshDir();
    const app2 = await run([e('touch "$DIR/a"', true), e('touch "$DIR/app"', true)], options(dir2, { isCandidate: true }));
    assert.equal(await app2.exited, 0);
    assert.equal(existsSync(join(dir2, 'a')), true);
    assert.equal(existsSync(join(dir2, 'app')), true);

    // A skipped last entry leaves no application to supervise.
    const dir3 = freshDir();
    assert.equal(await runExec([e('touch "$DIR/app"', true)], options(dir3, { isCandidate: false })), undefined);
    assert.equal(existsSync(join(dir3, 'app')), false);
  });

  test('the app exit code propagates', async () => {
    const app = await run([e('exit 3')], options(freshDir()));
    assert.equal(await app.exited, 3);
  });

  test('signal() forwards to the app: a TERM trap exiting 7 → 7', async () => {
    const dir = freshDir();
    const app = await run([
      e(`trap 'exit 7' TERM; touch "$DIR/ready"; while :; do sleep 0.05; done`),
    ], options(dir));
    await waitForFile(join(dir, 'ready'));
    app.signal('SIGTERM');
    assert.equal(await app.exited, 7);
    app.signal('SIGTERM'); // after exit: a no-op, no throw
  });

  test('an app killed by SIGKILL → 137', async () => {
    const app = await run([e('exec sleep 30')], options(freshDir()));
    app.signal('SIGKILL');
    assert.equal(await app.exited, 137);
  });

  test('a shell that cannot start rejects with a one-line error', async () => {
    const dir = freshDir();
    const shell = join(dir, 'no-such-shell');
    for (const entries of [[e('true'), e('true')], [e('true')]]) {
      await assert.rejects(runExec(entries, options(dir, { shell })), (err: Error) => {
        assert.match(err.message, /cannot start "true"/);
        assert.match(err.message, /ENOENT/);
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    }
  });
});
