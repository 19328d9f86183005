// A child process holding N change streams on one service (so that the bench
// process's own event loop does not skew receipt times). Protocol over IPC:
//   parent -> { url, count }            open the streams
//   child  -> { type: 'ready', open }    every stream got its snapshot
//   parent -> { type: 'collect' }
//   child  -> { type: 'times', times }   per event id: wall-clock receipt times (ms)
import http from 'node:http';

interface Start {
  url: string;
  count: number;
}

const now = () => performance.timeOrigin + performance.now();
const times: Record<string, number[]> = {};
const sockets: http.ClientRequest[] = [];

function open(url: string, onSnapshot: () => void): void {
  const req = http.get(url, { agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
    res.setEncoding('utf8');
    let buf = '';
    let snapshot = false;
    res.on('data', (chunk: string) => {
      const at = now();
      buf += chunk;
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const id = /^id: (\d+)$/m.exec(frame)?.[1];
        const event = /^event: (\w+)$/m.exec(frame)?.[1];
        if (event === 'snapshot' && !snapshot) {
          snapshot = true;
          onSnapshot();
        } else if (event === 'register' && id) (times[id] ??= []).push(at);
      }
    });
  });
  req.on('error', () => {});
  sockets.push(req);
}

process.on('message', (msg: Start | { type: 'collect' }) => {
  if ('type' in msg) {
    process.send!({ type: 'times', times });
    return;
  }
  let ready = 0;
  for (let i = 0; i < msg.count; i++) {
    open(msg.url, () => {
      if (++ready === msg.count) process.send!({ type: 'ready', open: ready });
    });
  }
});
process.on('disconnect', () => process.exit(0));
