// The error codes are declared once (src/errors.ts): the OpenAPI document, the README and
// docs/errors.md must list exactly those, with the table's status and title.
import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { ERROR_CODES, PROBLEMS } from '../src/errors.ts';

const ROOT = new URL('../', import.meta.url);
const read = (path: string) => readFile(new URL(path, ROOT), 'utf8');

describe('error codes', () => {
  it("the OpenAPI document's Problem.code enum is the table", async () => {
    const document = JSON.parse(await read('openapi/openapi.json'));
    assert.deepEqual(document.components.schemas.Problem.properties.code.enum, ERROR_CODES);
  });

  it('the README lists every code of the table and no other', async () => {
    const readme = await read('README.md');
    const intro = 'with a stable `code`:';
    const paragraph = readme.slice(readme.indexOf(intro) + intro.length);
    const listed = paragraph.slice(0, paragraph.indexOf('\n\n')).match(/`[a-z]+(-[a-z]+)*`/g) ?? [];
    assert.deepEqual(
      listed.map((c) => c.slice(1, -1)),
      ERROR_CODES,
    );
  });

  it('docs/errors.md gives each code the status and title of the table', async () => {
    const rows = (await read('docs/errors.md'))
      .split('\n')
      .map((line) => /^\| `([a-z-]+)` +\| (\d+) +\| ([^|]+?) +\|/.exec(line))
      .filter((m) => m !== null)
      .map((m) => [m[1], Number(m[2]), m[3]]);
    assert.deepEqual(
      rows,
      ERROR_CODES.map((code) => [code, PROBLEMS[code].status, PROBLEMS[code].title]),
    );
  });
});
