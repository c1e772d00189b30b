/**
 * SIGTERM to `kura start` (what systemd and container engines send), in every phase.
 */
import { stopCases } from '../support/start-stop-cases';

stopCases({ name: 'SIGTERM', signal: 'SIGTERM', to: 'process' });
