import Database from 'better-sqlite3';
const t = performance.now(); const u0 = process.cpuUsage();
const db = new Database(process.argv[2], { readonly: true }); if (process.env.MMAP) db.pragma('mmap_size=' + process.env.MMAP); if (process.env.CACHE) db.pragma('cache_size=' + process.env.CACHE);
const r = db.pragma('integrity_check', { simple: true });
const u = process.cpuUsage(u0);
console.log(r, (performance.now() - t).toFixed(0), 'ms; user', (u.user/1000).toFixed(0), 'sys', (u.system/1000).toFixed(0));
