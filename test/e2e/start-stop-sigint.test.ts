/**
 * SIGINT to the `kura start` process alone (`kill -INT <pid>`), in every phase.
 */
import { stopCases } from '../support/start-stop-cases';

stopCases({ name: 'SIGINT to the process alone', signal: 'SIGINT', to: 'process' });
