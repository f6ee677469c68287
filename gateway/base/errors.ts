/**
 * The one error type the gateway raises. Lower layers throw it with a stable code; only the HTTP and
 * WebSocket edges map the code to a status (see {@link httpStatusOf}); close codes are in
 * close-codes.ts.
 */
export type GatewayErrorCode =
  | 'AUTH_REQUIRED'
  | 'FORBIDDEN_ORIGIN'
  | 'NOT_FOUND'
  | 'KERNEL_NOT_FOUND'
  | 'KERNELSPEC_NOT_FOUND'
  | 'SESSION_NOT_FOUND'
  | 'CONTAINER_NOT_FOUND'
  | 'TOO_MANY_KERNELS'
  | 'TOO_MANY_SESSIONS'
  | 'KERNEL_ID_IN_USE'
  | 'BAD_REQUEST'
  | 'BAD_JSON'
  | 'PAYLOAD_TOO_LARGE'
  | 'KERNEL_START_FAILED'
  | 'KERNEL_DEAD'
  | 'RUNTIME_UNAVAILABLE'
  | 'SHUTTING_DOWN'
  | 'BAD_PATH'
  | 'FILE_NOT_FOUND'
  | 'WORKSPACE_FULL'
  | 'SANDBOX_EXEC_FAILED'
  | 'CHAT_NOT_CONFIGURED'
  | 'CONVERSATION_NOT_FOUND'
  | 'CONVERSATION_BUSY'
  | 'CONVERSATION_TOO_LARGE'
  | 'TOO_MANY_CONVERSATIONS'
  | 'MODEL_UNREACHABLE'
  | 'MODEL_ERROR'
  | 'MODEL_TIMEOUT'
  | 'SANDBOX_EXEC_TIMEOUT'
  | 'INTERNAL';

const STATUS: Record<GatewayErrorCode, { status: number; reason: string }> = {
  AUTH_REQUIRED: { status: 401, reason: 'Unauthorized' },
  FORBIDDEN_ORIGIN: { status: 403, reason: 'Forbidden' },
  NOT_FOUND: { status: 404, reason: 'Not Found' },
  KERNEL_NOT_FOUND: { status: 404, reason: 'Not Found' },
  KERNELSPEC_NOT_FOUND: { status: 404, reason: 'Not Found' },
  SESSION_NOT_FOUND: { status: 404, reason: 'Not Found' },
  CONTAINER_NOT_FOUND: { status: 404, reason: 'Not Found' },
  // Kernel Gateway answers an exceeded kernel limit with 403 "Resource Limit"; clients expect that.
  TOO_MANY_KERNELS: { status: 403, reason: 'Resource Limit' },
  TOO_MANY_SESSIONS: { status: 403, reason: 'Resource Limit' },
  KERNEL_ID_IN_USE: { status: 409, reason: 'Conflict' },
  BAD_REQUEST: { status: 400, reason: 'Bad Request' },
  BAD_JSON: { status: 400, reason: 'Bad Request' },
  PAYLOAD_TOO_LARGE: { status: 413, reason: 'Payload Too Large' },
  KERNEL_START_FAILED: { status: 500, reason: 'Kernel Start Failed' },
  KERNEL_DEAD: { status: 409, reason: 'Kernel Dead' },
  RUNTIME_UNAVAILABLE: { status: 503, reason: 'Service Unavailable' },
  SHUTTING_DOWN: { status: 503, reason: 'Service Unavailable' },
  BAD_PATH: { status: 400, reason: 'Bad Request' },
  FILE_NOT_FOUND: { status: 404, reason: 'Not Found' },
  WORKSPACE_FULL: { status: 507, reason: 'Insufficient Storage' },
  // Mostly a sandbox at its process limit (an exec is one more process): worth a retry later.
  SANDBOX_EXEC_FAILED: { status: 503, reason: 'Service Unavailable' },
  CHAT_NOT_CONFIGURED: { status: 503, reason: 'Service Unavailable' },
  CONVERSATION_NOT_FOUND: { status: 404, reason: 'Not Found' },
  CONVERSATION_BUSY: { status: 409, reason: 'Conflict' },
  CONVERSATION_TOO_LARGE: { status: 413, reason: 'Payload Too Large' },
  TOO_MANY_CONVERSATIONS: { status: 403, reason: 'Resource Limit' },
  // The model server is upstream of the gateway: its failures are a bad or missing gateway answer.
  MODEL_UNREACHABLE: { status: 502, reason: 'Bad Gateway' },
  MODEL_ERROR: { status: 502, reason: 'Bad Gateway' },
  MODEL_TIMEOUT: { status: 504, reason: 'Gateway Timeout' },
  // A helper in the sandbox that was stopped or too slow: killed at the exec's wall-time cap.
  SANDBOX_EXEC_TIMEOUT: { status: 504, reason: 'Gateway Timeout' },
  INTERNAL: { status: 500, reason: 'Internal Server Error' },
};

/** A domain error with a stable code; its message is safe to show to clients. */
export class GatewayError extends Error {
  override readonly name = 'GatewayError';
  constructor(
    readonly code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** HTTP status and Jupyter-style `reason` for an error code. */
export function httpStatusOf(code: GatewayErrorCode): { status: number; reason: string } {
  return STATUS[code];
}

/** Turns anything thrown into a GatewayError, hiding internals behind INTERNAL. */
export function asGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err;
  return new GatewayError('INTERNAL', 'Internal server error', { cause: err });
}
