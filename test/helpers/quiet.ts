import { muteSdkNodeVersionWarning } from '../../functions/src/local/quiet';

// The AWS SDK warns on Node 20 that later versions need Node 22 (Lambda runs 22); tests need not repeat it.
muteSdkNodeVersionWarning();
