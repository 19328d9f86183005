import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'packages/*/dist/', 'node_modules/', 'coverage/', 'test-output/', 'bench/results/', 'docs/api/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        URL: 'readonly',
        fetch: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        Buffer: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        structuredClone: 'readonly',
        setImmediate: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-empty': ['error', { allowEmptyCatch: true }],
    },
  },
  {
    // fastify runs without a logger (src/server/logger.ts): a request's own logger writes nothing.
    files: ['src/**/*.ts'],
    ignores: ['src/client/**', 'src/agent/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        ...[
          "MemberExpression[property.name='log'][object.name=/^_?(req|reply|request)$/]",
          "MemberExpression[property.name='log'][object.property.name=/^(request|reply)$/]",
          "VariableDeclarator[init.name=/^_?(req|reply|request)$/] > ObjectPattern > Property[key.name='log']",
        ].map((selector) => ({
          selector,
          message: 'req.log and reply.log write nothing here: use app.log (or req.server.log) with { reqId: req.id }.',
        })),
      ],
    },
  },
);
