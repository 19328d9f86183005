// npm run openapi: write openapi/openapi.json from the route schemas (a test fails when it is stale).
import { writeFile } from 'node:fs/promises';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';

const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }));
await writeFile(new URL('../openapi/openapi.json', import.meta.url), `${JSON.stringify(app.swagger(), null, 2)}\n`);
await app.close();
