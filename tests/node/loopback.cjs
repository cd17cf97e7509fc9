// Preloaded into Node peers (`node --require ./loopback.cjs …`): a server that calls
// listen(port) without a host binds 127.0.0.1 instead of every interface, and a
// listening server prints its real port, so tests can use port 0.
'use strict';
const net = require('node:net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function patchedListen(...args) {
  const first = args[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  } else if (first && typeof first === 'object' && first.port !== undefined && !first.host && !first.path) {
    first.host = '127.0.0.1';
  }
  this.once('listening', () => {
    const address = this.address();
    if (address && typeof address === 'object') {
      process.stderr.write(`loopback-listening ${address.address}:${address.port}\n`);
    }
  });
  return listen.apply(this, args);
};
