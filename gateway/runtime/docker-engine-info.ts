/**
 * {@link EngineInfo} over the local Docker Engine: its version and the kernel image it holds, for
 * the health report. dockerode stays on this side of the seam.
 */
import type Docker from 'dockerode';
import type { EngineInfo } from './runtime.js';

/** The label kernel-image/build.sh puts the image's content hash under. */
const IMAGE_HASH_LABEL = 'org.aido.kernel-image.hash';

function isNotFound(err: unknown): boolean {
  return (
    typeof err === 'object' && err !== null && (err as { statusCode?: number }).statusCode === 404
  );
}

/** Answers the health report's questions from `docker`. */
export function dockerEngineInfo(docker: Docker): EngineInfo {
  return {
    version: async () => (await docker.version()).Version,
    image: async (ref) => {
      try {
        const i = await docker.getImage(ref).inspect();
        const labels = i.Config.Labels as Record<string, string> | null;
        return { id: i.Id, hash: labels?.[IMAGE_HASH_LABEL] ?? null };
      } catch (err) {
        if (isNotFound(err)) return null;
        throw err;
      }
    },
  };
}
