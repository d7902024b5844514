/**
 * The part of the EC2 SDK the sidecar uses, behind one module that is only ever imported dynamically: a
 * dynamic `import("@aws-sdk/client-ec2")` would keep all of its 800-odd commands in the bundle's EC2 chunk,
 * while this module's named re-exports let tools/bundle.ts keep the one command sent.
 * @module
 */
export { DescribeInstancesCommand, EC2Client } from "@aws-sdk/client-ec2";
