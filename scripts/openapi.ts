// npm run openapi: write openapi/openapi.json from the route schemas, and the client's types
// generated from it (tests fail when either is stale).
import { writeFile } from 'node:fs/promises';
import { format, resolveConfig } from 'prettier';
import { buildApp } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { CLIENT_TYPES_FILE, renderClientTypes } from './client-types.ts';

const app = await buildApp(loadConfig({ LOG_LEVEL: 'silent' }));
const document = app.swagger();
// Formatted as prettier would, so that `prettier --check .` passes on it.
const openapiFile = new URL('../openapi/openapi.json', import.meta.url);
const config = await resolveConfig(openapiFile);
await writeFile(openapiFile, await format(JSON.stringify(document), { ...config, filepath: openapiFile.pathname }));
await writeFile(CLIENT_TYPES_FILE, await renderClientTypes(document));
await app.close();
