// npm run openapi: write openapi/openapi.json from the route schemas, and the client's types
// generated from it (tests fail when either is stale).
import { writeFile } from 'node:fs/promises';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { CLIENT_TYPES_FILE, renderClientTypes } from './client-types.ts';

const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }));
const document = app.swagger();
await writeFile(new URL('../openapi/openapi.json', import.meta.url), `${JSON.stringify(document, null, 2)}\n`);
await writeFile(CLIENT_TYPES_FILE, await renderClientTypes(document));
await app.close();
