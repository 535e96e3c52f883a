// Checks src/config: defaults, a LiteFS-style file, env expansion, durations,
// every error class (message names the file and the key), and the search order.
// Files are written only under one temp dir, removed at the end.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ConfigError, DEFAULTS, expandEnv, findConfigPath, formatDuration, loadConfig, parseDuration, parseHostPort,
  type Config, type LoadOptions,
} from '../../src/config/index.js';

const root = mkdtempSync(join(tmpdir(), 'config-test-'));
after(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** Writes `text` to a fresh directory under the temp root and returns the file's path. */
function writeConfig(text: string, name = 'litefs.yml'): string {
  const dir = join(root, `case-${++counter}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

function load(text: string, opts: Omit<LoadOptions, 'path'> = {}): Config {
  return loadConfig({ env: {}, ...opts, path: writeConfig(text) });
}

/** Loads `text`, expects a ConfigError, checks it is one line naming the file and each of `parts`. */
function loadError(text: string, parts: string[], opts: Omit<LoadOptions, 'path'> = {}): ConfigError {
  const file = writeConfig(text);
  let caught: unknown;
  try {
    loadConfig({ env: {}, ...opts, path: file });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.ok(!caught.message.includes('\n'), `message is one line: ${caught.message}`);
  assert.ok(caught.message.startsWith(`${file}: `), `message names the file: ${caught.message}`);
  for (const part of parts) assert.ok(caught.message.includes(part), `message ${JSON.stringify(caught.message)} should include ${JSON.stringify(part)}`);
  return caught;
}

const MINIMAL = 'lease:\n  type: static\n';

describe('defaults', () => {
  test('a minimal file gets LiteFS defaults', () => {
    const file = writeConfig(MINIMAL);
    const cfg = loadConfig({ path: file, env: {} });
    const host = hostname();
    assert.deepEqual(cfg, {
      configPath: file,
      exitOnError: true,
      skipSync: false,
      strictVerify: false,
      exec: [],
      data: { dir: '/var/lib/litefs', compress: true, retention: 600_000, retentionMonitorInterval: 60_000 },
      fuse: { dir: '/litefs', allowOther: false, debug: false, cacheJournals: false },
      http: { addr: ':20202', snapshotTimeout: 0 },
      lease: {
        type: 'static', hostname: host, advertiseUrl: `http://${host}:20202`, candidate: true, promote: false,
        reconnectDelay: 1000, demoteDelay: 10_000, databases: undefined,
      },
      log: { format: 'text', timestamp: true, debug: false },
      tracing: { enabled: true, path: undefined, maxSize: 64, maxCount: 8, compress: true },
    });
    assert.equal(cfg.proxy, undefined);
    assert.equal(cfg.backup, undefined);
  });

  test('advertise-url defaults to the port of http.addr', () => {
    const cfg = load('http:\n  addr: "127.0.0.1:30303"\nlease:\n  type: consul\n  hostname: node1\n  consul:\n    url: http://localhost:8500\n');
    assert.equal(cfg.lease.advertiseUrl, 'http://node1:30303');
    assert.deepEqual(cfg.lease.consul, { url: 'http://localhost:8500', key: 'litefs/primary', ttl: 10_000, lockDelay: 1000 });
  });

  test('a static replica takes the primary\'s hostname from advertise-url', () => {
    const cfg = load('lease:\n  type: static\n  candidate: false\n  advertise-url: "http://primary.internal:20202"\n');
    assert.equal(cfg.lease.hostname, 'primary.internal');
    assert.equal(cfg.lease.candidate, false);
  });
});

const LITEFS_EXAMPLE = `# A node of a three-node cluster, written the way LiteFS documents it.
fuse:
  dir: "/litefs"
  allow-other: false
  debug: false

data:
  dir: "/var/lib/litefs"
  compress: true
  retention: "10m"
  retention-monitor-interval: "1m"

exit-on-error: false
skip-sync: false
strict-verify: true

exec:
  - cmd: "myapp migrate"
    if-candidate: true
  - cmd: "myapp serve -addr :8081"

http:
  addr: ":20202"
  snapshot-timeout: "30s"

proxy:
  addr: ":8080"
  target: "localhost:8081"
  db: "my.db"
  debug: false
  max-lag: "5s"
  passthrough: ["/debug/*", "*.png"]
  always-forward: ["/admin/*"]
  primary-redirect-timeout: "3s"
  read-timeout: "0s"
  read-header-timeout: "10s"
  write-timeout: "0s"
  idle-timeout: "30s"

lease:
  type: "consul"
  advertise-url: "http://myhost:20202"
  hostname: "myhost"
  candidate: true
  promote: true
  reconnect-delay: "2s"
  demote-delay: "15s"
  databases: ["my.db"]
  consul:
    url: "http://myhost:8500"
    key: "litefs/myapp"
    ttl: "10s"
    lock-delay: "1s"

log:
  format: "json"
  timestamp: false
  debug: true

tracing:
  path: "/var/log/litefs/trace.log"
  max-size: 64
  max-count: 10
  compress: true
`;

describe('LiteFS files', () => {
  test('a full LiteFS-style file loads unchanged', () => {
    const cfg = load(LITEFS_EXAMPLE);
    assert.equal(cfg.exitOnError, false);
    assert.equal(cfg.skipSync, false);
    assert.equal(cfg.strictVerify, true);
    assert.deepEqual(cfg.exec, [{ cmd: 'myapp migrate', ifCandidate: true }, { cmd: 'myapp serve -addr :8081', ifCandidate: false }]);
    assert.deepEqual(cfg.fuse, { dir: '/litefs', allowOther: false, debug: false, cacheJournals: false });
    assert.deepEqual(cfg.data, { dir: '/var/lib/litefs', compress: true, retention: 600_000, retentionMonitorInterval: 60_000 });
    assert.deepEqual(cfg.http, { addr: ':20202', snapshotTimeout: 30_000 });
    assert.deepEqual(cfg.proxy, {
      addr: ':8080', target: 'localhost:8081', db: 'my.db', debug: false, maxLag: 5000,
      passthrough: ['/debug/*', '*.png'], alwaysForward: ['/admin/*'], primaryRedirectTimeout: 3000,
      readTimeout: 0, readHeaderTimeout: 10_000, writeTimeout: 0, idleTimeout: 30_000,
    });
    assert.deepEqual(cfg.lease, {
      type: 'consul', hostname: 'myhost', advertiseUrl: 'http://myhost:20202', candidate: true, promote: true,
      reconnectDelay: 2000, demoteDelay: 15_000, databases: ['my.db'],
      consul: { url: 'http://myhost:8500', key: 'litefs/myapp', ttl: 10_000, lockDelay: 1000 },
    });
    assert.deepEqual(cfg.log, { format: 'json', timestamp: false, debug: true });
    assert.deepEqual(cfg.tracing, { enabled: true, path: '/var/log/litefs/trace.log', maxSize: 64, maxCount: 10, compress: true });
  });

  test('exec as one string, YAML 1.1 booleans, and numbers in string keys', () => {
    const cfg = load('exec: "myapp -addr :8081"\nlease:\n  type: static\n  candidate: yes\n  hostname: 0123\nfuse:\n  allow-other: on\n');
    assert.deepEqual(cfg.exec, [{ cmd: 'myapp -addr :8081', ifCandidate: false }]);
    assert.equal(cfg.lease.candidate, true);
    assert.equal(cfg.lease.hostname, '0123');
    assert.equal(cfg.fuse.allowOther, true);
    assert.equal(load('lease:\n  type: static\nfuse:\n  cache-journals: true\n').fuse.cacheJournals, true);
  });

  test('relative data.dir and fuse.dir are resolved against the config file\'s directory', () => {
    const file = writeConfig('data:\n  dir: ./data\nfuse:\n  dir: mnt\nlease:\n  type: static\n');
    const cfg = loadConfig({ path: file, env: {} });
    const dir = join(file, '..');
    assert.equal(cfg.data.dir, join(dir, 'data'));
    assert.equal(cfg.fuse.dir, join(dir, 'mnt'));
  });

  test('etcd lease (our addition) with comma-separated endpoints', () => {
    const cfg = load('lease:\n  type: etcd\n  etcd:\n    endpoints: "127.0.0.1:2379, http://10.0.0.2:2379"\n    ttl: 5s\n');
    assert.deepEqual(cfg.lease.etcd, { endpoints: ['http://127.0.0.1:2379', 'http://10.0.0.2:2379'], key: 'litefs/primary', ttl: 5000, lockDelay: 1000 });
  });

  test('S3 backup (our addition) falls back to LITEFS_S3_* then AWS_* variables', () => {
    const env = {
      LITEFS_S3_BUCKET: 'bk', LITEFS_S3_ENDPOINT: 'http://127.0.0.1:4569', AWS_REGION: 'eu-west-1',
      LITEFS_S3_ACCESS_KEY_ID: 'litefs-id', AWS_ACCESS_KEY_ID: 'aws-id', AWS_SECRET_ACCESS_KEY: 'aws-secret',
    };
    const cfg = load(`${MINIMAL}backup:\n  type: s3\n  path: /clusters/a/\n  sync-interval: 500ms\n`, { env });
    assert.deepEqual(cfg.backup, {
      type: 's3', bucket: 'bk', path: 'clusters/a', endpoint: 'http://127.0.0.1:4569', region: 'eu-west-1', forcePathStyle: true,
      accessKeyId: 'litefs-id', secretAccessKey: 'aws-secret', syncInterval: 500, snapshotInterval: 86_400_000, retention: 86_400_000,
    });
    const plain = load(`${MINIMAL}backup:\n  type: s3\n  bucket: b2\n  region: us-west-2\n`, { env: {} });
    assert.equal(plain.backup?.endpoint, undefined);
    assert.equal(plain.backup?.forcePathStyle, false);
    assert.equal(plain.backup?.accessKeyId, undefined);
    assert.equal(plain.backup?.region, 'us-west-2');
  });
});

describe('environment expansion', () => {
  const env = { HOST: 'node1', REGION: 'ord', EMPTY: '', OTHER: 'ord' };

  test('expandEnv forms', () => {
    assert.equal(expandEnv('a $HOST b', env), 'a node1 b');
    assert.equal(expandEnv('${HOST}-x', env), 'node1-x');
    assert.equal(expandEnv('$HOST-x', env), 'node1-x');
    assert.equal(expandEnv('[$MISSING][${MISSING}]', env), '[][]');
    assert.equal(expandEnv('${REGION == "ord"} ${REGION == "iad"}', env), 'true false');
    assert.equal(expandEnv('${REGION != "ord"} ${ REGION != \'iad\' }', env), 'false true');
    assert.equal(expandEnv('${REGION == OTHER} ${REGION != HOST}', env), 'true true');
    assert.equal(expandEnv('${MISSING == ""}', env), 'true');
    assert.equal(expandEnv('cost: 5$ and $ alone, end$', env), 'cost: 5$ and $ alone, end$');
  });

  test('expansion happens before YAML parsing', () => {
    const cfg = load(
      'lease:\n  type: "${LEASE}"\n  hostname: $HOST\n  candidate: ${REGION == "ord"}\n  promote: ${REGION != "ord"}\nexec: "app --region ${REGION}"\n',
      { env: { ...env, LEASE: 'static' } },
    );
    assert.equal(cfg.lease.type, 'static');
    assert.equal(cfg.lease.hostname, 'node1');
    assert.equal(cfg.lease.candidate, true);
    assert.equal(cfg.lease.promote, false);
    assert.deepEqual(cfg.exec, [{ cmd: 'app --region ord', ifCandidate: false }]);
  });

  test('noExpandEnv (-no-expand-env) keeps $VAR literally', () => {
    const cfg = load('lease:\n  type: static\n  hostname: $HOST\nexec: "app --name ${HOST}"\n', { env, noExpandEnv: true });
    assert.equal(cfg.lease.hostname, '$HOST');
    assert.deepEqual(cfg.exec, [{ cmd: 'app --name ${HOST}', ifCandidate: false }]);
  });

  test('a malformed ${ is an error naming the file and line', () => {
    loadError(`${MINIMAL}exec: "app \${HOST"\n`, ['unterminated "${"', '(line 3)', '-no-expand-env'], { env });
    loadError(`${MINIMAL}exec: "app \${HOST:-x}"\n`, ['unsupported environment expansion "${HOST:-x}"', '(line 3)'], { env });
  });
});

describe('durations', () => {
  test('parseDuration reads Go-style durations as milliseconds', () => {
    const cases: [string, number][] = [
      ['10s', 10_000], ['1m30s', 90_000], ['500ms', 500], ['1h', 3_600_000], ['1.5h', 5_400_000], ['2h45m', 9_900_000],
      ['0', 0], ['0s', 0], ['1us', 0.001], ['1µs', 0.001], ['250000ns', 0.25], ['.5s', 500], ['1.100s', 1100], ['-1s', -1000],
    ];
    for (const [text, ms] of cases) assert.equal(parseDuration(text), ms, text);
    for (const bad of ['', 'ten', '10', 's', '1x', '1s2', '1 s', '--1s', '1d']) assert.equal(parseDuration(bad), undefined, bad);
  });

  test('formatDuration round-trips', () => {
    for (const ms of [0, 500, 1000, 90_000, 3_600_000, 5_405_000]) assert.equal(parseDuration(formatDuration(ms)), ms);
    assert.equal(formatDuration(90_000), '1m30s');
  });

  test('duration keys accept strings and reject bare numbers with a hint', () => {
    assert.equal(load('data:\n  retention: 1h30m\nlease:\n  type: static\n').data.retention, 5_400_000);
    loadError('data:\n  retention: 600\nlease:\n  type: static\n', ['data.retention: expected a duration like "10s", got 600', '"600s"', '(line 2)']);
    loadError('lease:\n  type: static\n  demote-delay: "-5s"\n', ['lease.demote-delay: expected a duration that is not negative']);
  });
});

describe('errors name the file, the key and the expected form', () => {
  test('bad duration', () => {
    const err = loadError(
      'lease:\n  type: consul\n  consul:\n    url: http://localhost:8500\n    ttl: ten\n',
      ['lease.consul.ttl: expected a duration like "10s"', 'got "ten"', '(line 5)'],
    );
    assert.equal(err.key, 'lease.consul.ttl');
    assert.equal(err.line, 5);
  });

  test("Consul's limits on a session: TTL 10s..24h, lock-delay at most 60s", () => {
    const base = 'lease:\n  type: consul\n  consul:\n    url: http://localhost:8500\n';
    const ttl = loadError(`${base}    ttl: 5s\n`, ['lease.consul.ttl: expected a duration from 10s to 24h', 'got "5s"']);
    assert.equal(ttl.key, 'lease.consul.ttl');
    loadError(`${base}    ttl: 25h\n`, ['lease.consul.ttl: expected a duration from 10s to 24h']);
    loadError(`${base}    lock-delay: 61s\n`, ['lease.consul.lock-delay: expected a duration of at most 60s']);
  });

  test('unknown keys at any depth', () => {
    loadError('fuse:\n  dri: /mnt\nlease:\n  type: static\n', ['unknown key "fuse.dri" (known: dir, allow-other, debug, cache-journals)', 'did you mean "dir"?', '(line 2)']);
    loadError(`${MINIMAL}colour: blue\n`, ['unknown key "colour" (known: exit-on-error,']);
    loadError('lease:\n  type: consul\n  consul:\n    url: http://c:8500\n    tll: 10s\n', ['unknown key "lease.consul.tll"', 'did you mean "ttl"?']);
    loadError(`${MINIMAL}exec:\n  - cmd: app\n    if-primary: true\n`, ['unknown key "exec[0].if-primary" (known: cmd, if-candidate)']);
    loadError(`${MINIMAL}consul:\n  url: http://c:8500\n`, ['unknown key "consul"', 'lease.consul']);
  });

  test('wrong types', () => {
    loadError(`${MINIMAL}fuse:\n  allow-other: maybe\n`, ['fuse.allow-other: expected true or false, got "maybe"']);
    loadError(`${MINIMAL}fuse:\n  cache-journals: 1\n`, ['fuse.cache-journals: expected true or false']);
    loadError(`${MINIMAL}data: [a, b]\n`, ['data: expected a mapping with keys dir, compress', 'got a list']);
    loadError('lease:\n  type: static\n  databases: {a: 1}\n', ['lease.databases: expected a list of strings, got a mapping']);
    loadError(`${MINIMAL}exec: {cmd: app}\n`, ['exec: expected a command string or a list']);
    loadError(`${MINIMAL}tracing:\n  max-count: lots\n`, ['tracing.max-count: expected a whole number']);
    loadError('- lease\n', ['expected a mapping of settings at the top level']);
  });

  test('enum values', () => {
    loadError('lease:\n  type: zookeeper\n', ['lease.type: expected one of static, consul, etcd, got "zookeeper"']);
    loadError('fuse:\n  dir: /mnt\n', ['lease.type: required: expected one of static, consul, etcd']);
    loadError(`${MINIMAL}log:\n  format: xml\n`, ['log.format: expected one of text, json, got "xml"']);
    loadError(`${MINIMAL}backup:\n  type: litefs-cloud\n  auth-token: x\n`, ['backup.type: expected one of s3, got "litefs-cloud"']);
  });

  test('YAML syntax errors give the line', () => {
    loadError('lease:\n  type: static\nfuse: dir: /mnt\n', ['invalid YAML at line 3', 'column 7']);
    loadError('lease:\n  type: static\nlease:\n  type: consul\n', ['invalid YAML at line 3', 'unique']);
    loadError('lease:\n\ttype: static\n', ['invalid YAML at line 2']);
  });

  test('fuse.dir and data.dir must not contain each other', () => {
    loadError('data:\n  dir: /srv/x\nfuse:\n  dir: /srv/x\nlease:\n  type: static\n', ['fuse.dir: "/srv/x" is the same directory as data.dir']);
    loadError('data:\n  dir: /srv/x\nfuse:\n  dir: /srv/x/mnt\nlease:\n  type: static\n', ['fuse.dir: "/srv/x/mnt" is inside data.dir "/srv/x"']);
    loadError('fuse:\n  dir: /litefs\ndata:\n  dir: /litefs/.data\nlease:\n  type: static\n', ['data.dir: "/litefs/.data" is inside fuse.dir "/litefs"']);
    // Siblings sharing a name prefix are fine.
    assert.equal(load('data:\n  dir: /srv/x\nfuse:\n  dir: /srv/x2\nlease:\n  type: static\n').fuse.dir, '/srv/x2');
  });

  test('lease backends need their settings', () => {
    loadError('lease:\n  type: consul\n', ['lease.consul.url: required when lease.type is consul']);
    loadError('lease:\n  type: consul\n  consul:\n    url: localhost:8500\n', ['lease.consul.url: expected an http(s) URL']);
    loadError('lease:\n  type: etcd\n  etcd:\n    key: x\n', ['lease.etcd.endpoints: required when lease.type is etcd']);
    loadError('lease:\n  type: etcd\n  etcd:\n    endpoints: [http://e:2379]\n    ttl: 500ms\n', ['lease.etcd.ttl: expected a duration of at least 1s']);
    loadError('lease:\n  type: static\n  candidate: false\n', ['lease.advertise-url: required with lease.type static and candidate: false']);
    loadError('lease:\n  type: static\n  advertise-url: myhost:20202\n', ['lease.advertise-url: expected an http(s) URL']);
  });

  test('http.addr must look like [host]:port', () => {
    for (const ok of [':20202', '127.0.0.1:20202', 'localhost:0', '[::1]:20202']) {
      assert.equal(load(`${MINIMAL}http:\n  addr: "${ok}"\n`).http.addr, ok);
    }
    for (const bad of ['20202', 'http://host:20202', ':99999', 'host:', 'a:b:1']) {
      loadError(`${MINIMAL}http:\n  addr: "${bad}"\n`, [`http.addr: expected an address like ":20202"`, `got "${bad}"`]);
    }
    assert.deepEqual(parseHostPort('[::1]:80'), { host: '::1', port: 80 });
  });

  test('proxy and backup requirements', () => {
    loadError(`${MINIMAL}proxy:\n  addr: ":8080"\n  db: my.db\n`, ['proxy.target: required when proxy.addr is set']);
    loadError(`${MINIMAL}proxy:\n  addr: ":8080"\n  target: localhost:8081\n`, ['proxy.db: required when proxy.addr is set']);
    assert.equal(load(`${MINIMAL}proxy:\n  target: localhost:8081\n`).proxy, undefined);
    loadError(`${MINIMAL}backup:\n  type: s3\n`, ['backup.bucket: required', 'LITEFS_S3_BUCKET']);
    loadError(`${MINIMAL}backup:\n  type: s3\n  bucket: b\n  access-key-id: x\n`, ['backup.secret-access-key: required']);
  });
});

describe('search order', () => {
  test('-config path, then ./litefs.yml, ~/litefs.yml, /etc/litefs.yml', () => {
    const cwdDir = join(root, 'search-cwd');
    const homeDir = join(root, 'search-home');
    mkdirSync(cwdDir, { recursive: true });
    mkdirSync(homeDir, { recursive: true });
    const savedCwd = process.cwd();
    const savedHome = process.env['HOME'];
    try {
      process.chdir(cwdDir);
      process.env['HOME'] = homeDir;
      writeFileSync(join(cwdDir, 'litefs.yml'), 'lease:\n  type: static\n  hostname: from-cwd\n');
      writeFileSync(join(homeDir, 'litefs.yml'), 'lease:\n  type: static\n  hostname: from-home\n');
      const explicit = writeConfig('lease:\n  type: static\n  hostname: from-flag\n', 'other.yml');

      assert.equal(loadConfig({ path: explicit, env: {} }).lease.hostname, 'from-flag');
      assert.equal(findConfigPath(), join(cwdDir, 'litefs.yml'));
      assert.equal(loadConfig({ env: {} }).lease.hostname, 'from-cwd');

      rmSync(join(cwdDir, 'litefs.yml'));
      assert.equal(findConfigPath(), join(homeDir, 'litefs.yml'));
      assert.equal(loadConfig({ env: {} }).lease.hostname, 'from-home');

      rmSync(join(homeDir, 'litefs.yml'));
      if (existsSync('/etc/litefs.yml')) {
        assert.equal(findConfigPath(), '/etc/litefs.yml');
      } else {
        assert.throws(() => findConfigPath(), (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          for (const p of [join(cwdDir, 'litefs.yml'), join(homeDir, 'litefs.yml'), '/etc/litefs.yml']) assert.ok(err.message.includes(p), err.message);
          return true;
        });
      }

      assert.throws(() => findConfigPath('missing.yml'), /missing\.yml: config file not found/);
    } finally {
      process.chdir(savedCwd);
      if (savedHome === undefined) delete process.env['HOME'];
      else process.env['HOME'] = savedHome;
    }
  });
});

test('DEFAULTS match the documented values', () => {
  assert.equal(DEFAULTS.lease.demoteDelay, 10_000);
  assert.equal(DEFAULTS.backup.snapshotInterval, 24 * 3_600_000);
});
