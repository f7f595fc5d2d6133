import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PROJECT_ROOT } from '../../infra/lib/bundling';

/**
 * `cdk synth` as CI runs it: the real CLI and cdk.json, no AWS credentials, no
 * network (no version check, notices or telemetry), no Docker.
 */
const offlineEnv = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(AWS_|CDK_DEFAULT_)/.test(name)) env[name] = value;
  }
  return {
    ...env,
    CDK_DISABLE_VERSION_CHECK: '1',
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    // Point the SDK at files that do not exist, so no profile on the machine is picked up.
    AWS_CONFIG_FILE: path.join(os.tmpdir(), 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: path.join(os.tmpdir(), 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
  };
};

function cdkSynth(outdir: string, ...extraArgs: string[]) {
  return spawnSync('npx', ['cdk', 'synth', '--quiet', '--no-notices', '--output', outdir, ...extraArgs], {
    cwd: PROJECT_ROOT,
    env: offlineEnv(),
    encoding: 'utf8',
    timeout: 180_000,
  });
}

describe('cdk synth (CLI, offline, no credentials)', () => {
  let outdir: string;
  beforeEach(() => {
    outdir = mkdtempSync(path.join(os.tmpdir(), 'relay-synth-'));
  });
  afterEach(() => rmSync(outdir, { recursive: true, force: true }));

  test('synthesizes the stack with the cdk-nag plugin and an empty validation report', () => {
    const result = cdkSynth(outdir);
    expect({ status: result.status, stderr: result.status === 0 ? '' : result.stderr }).toEqual({ status: 0, stderr: '' });
    const template = JSON.parse(readFileSync(path.join(outdir, 'ConfluenceUploadRelay.template.json'), 'utf8'));
    expect(Object.keys(template.Resources).length).toBeGreaterThan(50);
    const reportPath = path.join(outdir, 'validation-report.json');
    if (existsSync(reportPath)) {
      const report = JSON.parse(readFileSync(reportPath, 'utf8'));
      const violations = (report.pluginReports ?? []).flatMap((r: { violations?: unknown[] }) => r.violations ?? []);
      expect(violations).toEqual([]);
    }
  }, 180_000);

  test('invalid context fails synthesis with a message naming the key', () => {
    const result = cdkSynth(outdir, '-c', 'uploadAs=admin', '-c', 'directMaxBytes=5000000');
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/uploadAs must be one of user, app, got "admin"/);
    expect(result.stderr).toMatch(/directMaxBytes must be a whole number from 1 to 4718592/);
  }, 180_000);
});
