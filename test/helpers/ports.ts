// A free loopback port: the OS picks one, the listener is closed, the number is returned.
import net, { type AddressInfo } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((ok, ko) => {
    const s = net.createServer().once('error', ko);
    s.unref();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => ok(port));
    });
  });
}
