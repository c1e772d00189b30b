/**
 * Ctrl-C at the terminal running `kura start`: SIGINT to its whole process group, in every phase.
 */
import { stopCases } from '../support/start-stop-cases';

stopCases({ name: 'Ctrl-C (SIGINT to the process group)', signal: 'SIGINT', to: 'group' });
