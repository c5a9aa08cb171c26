// SPDX-License-Identifier: MIT
// The S3 server of the s3 tests: @20minutes/s3rver (installed by
// install-s3rver.sh under $TALLY_S3RVER_DIR), started on 127.0.0.1, or
// on the address in $TALLY_S3RVER_ADDR (the harness's server on its
// bridge, reached from the nodes' network namespaces).
//
//   node --openssl-legacy-provider s3rver.js PORT DIRECTORY BUCKET...
//
// (s3rver encrypts its continuation tokens with DES, which OpenSSL 3
// keeps in its legacy provider.)
// PORT 0 picks a free port. Prints the bound port on stdout once the
// server accepts connections; exits on SIGTERM or SIGINT, and by itself
// when its parent process goes away (a test killed without cleanup).
// It checks SigV4 signatures; its one account is S3RVER / S3RVER.
'use strict';

const fs = require('fs');
const path = require('path');

const [port, directory, ...buckets] = process.argv.slice(2);
if (port === undefined || !directory || !buckets.length) {
	console.error('usage: node s3rver.js PORT DIRECTORY BUCKET...');
	process.exit(2);
}
if (!process.env.TALLY_S3RVER_DIR) {
	console.error('s3rver.js: TALLY_S3RVER_DIR is not set');
	process.exit(2);
}
const S3rver = require(path.join(process.env.TALLY_S3RVER_DIR,
	'node_modules', '@20minutes', 's3rver'));

const server = new S3rver({
	port: Number(port),
	address: process.env.TALLY_S3RVER_ADDR || '127.0.0.1',
	directory,
	configureBuckets: buckets.map((name) => ({ name })),
	silent: true,
});
// process.ppid is read once at start: ask /proc for the parent now
function parentNow() {
	try {
		const stat = fs.readFileSync('/proc/self/stat', 'utf8');
		return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
	} catch (err) {
		return parent;
	}
}
const parent = parentNow();

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
setInterval(() => {
	if (parentNow() !== parent)
		process.exit(0);
}, 500).unref();

server.run().then((addr) => {
	process.stdout.write(`${addr.port}\n`);
	// keep running: the listening socket holds the event loop
	setInterval(() => {}, 1 << 30);
}, (err) => {
	console.error(`s3rver.js: cannot start: ${err.message}`);
	process.exit(1);
});
