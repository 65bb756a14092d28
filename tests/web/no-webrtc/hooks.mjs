// Module resolution hook: `webrtc-polyfill` resolves to ./stub.mjs.
export async function resolve (specifier, context, next) {
  if (specifier === 'webrtc-polyfill') {
    return { url: new URL('./stub.mjs', import.meta.url).href, shortCircuit: true }
  }
  return next(specifier, context)
}
