import neostandard from 'neostandard'
import globals from 'globals'

// neostandard = `standard` style for ESLint 9 flat config; `ts: true` also
// lints *.ts with typescript-eslint (syntax rules only, no type information,
// so `eslint .` needs no tsconfig project service and stays fast).
// Relative imports keep their `.ts` extension (Node's type stripping needs
// them; tsc rewrites them for dist/): no neostandard rule objects to that.
// src/schemas/generated/ is linted too: it already passes, and a lint error
// there should be fixed in scripts/generate-schemas.ts, not by hand.
export default [
  ...neostandard({
    ts: true,
    ignores: [
      'dist/**',
      'coverage/**',
      '.tap/**',
      'node_modules/**',
      'test/artifacts/**',
      'bench/results/**',
      // openapi-typescript's output, in its own style (semicolons, double quotes): checked by
      // tsc and pinned by test/scripts/generate-client.test.ts, never edited by hand.
      'src/client/openapi.ts'
    ]
  }),
  {
    files: ['**/*.ts'],
    rules: {
      // The TypeBox idiom `export const X = Type.Object(...)` plus
      // `export type X = Static<typeof X>` gives a value and a type the same
      // name on purpose. TypeScript itself rejects real redeclarations, which
      // is why typescript-eslint advises against this rule in TS code.
      '@typescript-eslint/no-redeclare': 'off'
    }
  },
  {
    // The demo page's script runs in browsers, not in Node.
    files: ['src/assets/**/*.js'],
    languageOptions: { globals: globals.browser, sourceType: 'module' }
  },
  {
    // The generator writes `/* eslint-disable @typescript-eslint/no-redeclare */`
    // at the top of each file; with the rule off above that directive is
    // unused. Don't warn about it (it is harmless, and the generated text is
    // pinned by a freshness test).
    files: ['src/schemas/generated/**'],
    linterOptions: { reportUnusedDisableDirectives: 'off' }
  }
]
