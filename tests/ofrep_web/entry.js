// The official OpenFeature web SDK and OFREP web provider, as a storefront page uses them;
// bundled into dist/ofrep-web.js for the browser test (window.OpenFeature, window.OFREPWebProvider).
import { OpenFeature } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';

window.OpenFeature = OpenFeature;
window.OFREPWebProvider = OFREPWebProvider;
