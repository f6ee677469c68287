/** The kernelspecs the gateway offers: the sandboxed python3 spec shipped in kernel-image/kernelspec. */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../base/errors.js';

export interface KernelSpecModel {
  name: string;
  spec: {
    argv: string[];
    display_name: string;
    language: string;
    interrupt_mode?: string;
    env?: Record<string, string>;
    metadata?: Record<string, unknown>;
  };
  resources: Record<string, string>;
}

/** Finds `kernel-image/kernelspec` upward from this module (works from gateway/ and dist/gateway/). */
function findSpecDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, 'kernel-image', 'kernelspec');
    if (existsSync(path.join(candidate, 'kernel.json'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error('kernel-image/kernelspec/kernel.json not found');
}

export class KernelSpecs {
  readonly defaultName = 'python3';
  readonly #dir: string;
  readonly #spec: KernelSpecModel['spec'];
  readonly #files: string[];

  constructor(dir: string = findSpecDir()) {
    this.#dir = dir;
    this.#spec = JSON.parse(
      readFileSync(path.join(dir, 'kernel.json'), 'utf8'),
    ) as KernelSpecModel['spec'];
    this.#files = ['logo-32x32.png', 'logo-64x64.png', 'logo-svg.svg'].filter((f) =>
      existsSync(path.join(dir, f)),
    );
  }

  has(name: string): boolean {
    return name === this.defaultName;
  }

  model(name: string, baseUrl = '/'): KernelSpecModel {
    if (!this.has(name))
      throw new GatewayError('KERNELSPEC_NOT_FOUND', `Kernel spec ${name} not found`);
    const resources: Record<string, string> = {};
    for (const f of this.#files)
      resources[f.replace(/\.(png|svg)$/, '')] = `${baseUrl}kernelspecs/${name}/${f}`;
    return { name, spec: this.#spec, resources };
  }

  all(baseUrl = '/'): { default: string; kernelspecs: Record<string, KernelSpecModel> } {
    return {
      default: this.defaultName,
      kernelspecs: { [this.defaultName]: this.model(this.defaultName, baseUrl) },
    };
  }

  /** Absolute path of a resource file, or a 404 error. */
  resource(name: string, file: string): string {
    if (!this.has(name) || !this.#files.includes(file)) {
      throw new GatewayError('NOT_FOUND', `kernelspec resource ${name}/${file} not found`);
    }
    return path.join(this.#dir, file);
  }
}
