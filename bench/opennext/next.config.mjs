// The bench's peer (see README.md here): nothing beyond Next.js's defaults.
/** @type {import("next").NextConfig} */
const nextConfig = {};
export default nextConfig;
