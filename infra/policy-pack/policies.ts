/**
 * The policies of ../policy.ts as CrossGuard policies. The checks are not
 * repeated here: each engine resource becomes the `PolicyResource` they read,
 * and the stack's `inventory` and `policyFacts` outputs (index.ts of the
 * program) give them the rest of their context.
 *
 * What the engine gives a pack differs from what the mocks record, and the
 * mapping below follows the engine: a stack policy sees outputs, a resource
 * policy inputs; no resource id (an input that names another resource is
 * linked to it through the dependencies the engine records); `protect` but
 * not `retainOnDelete`. During a preview a value not yet known throws
 * UnknownValueError, which the engine reports as "can't run during preview":
 * the inventory is read only by the policies that need it, so the others
 * still run on a first preview.
 */
import {
  UnknownValueError,
  type Policies,
  type PolicyResource as EngineResource,
  type ReportViolation,
  type ResourceValidationArgs,
  type ResourceValidationPolicy,
  type StackValidationArgs,
  type StackValidationPolicy,
} from '@pulumi/policy';
import type { Inventory } from '../../lib/core/inventory.ts';
import {
  policies,
  type Policy,
  type PolicyContext,
  type PolicyFacts,
  type PolicyResource,
  type ResourcePolicy,
  type Violation,
} from '../policy.ts';

export const stackType = 'pulumi:pulumi:Stack';
/** The stack outputs the stack policies read, as infra/index.ts exports them. */
export const stackOutputs = { inventory: 'inventory', facts: 'policyFacts' } as const;

type EngineView = Pick<EngineResource, 'type' | 'name' | 'urn' | 'props' | 'opts' | 'provider'> & {
  propertyDependencies?: Record<string, { urn: string }[]>;
};

function knownId(props: Record<string, unknown>): string {
  try {
    const id = props['id'];
    return typeof id === 'string' || typeof id === 'number' ? String(id) : '';
  } catch (e) {
    if (e instanceof UnknownValueError) return '';
    throw e;
  }
}

/** A resource as the engine hands it to a policy, in the shape ../policy.ts checks. */
export function fromEngine(r: EngineView): PolicyResource {
  return {
    type: r.type,
    name: r.name,
    // Some providers copy the id into the outputs; where one does not, links go by dependency.
    id: knownId(r.props),
    custom: r.provider !== undefined,
    inputs: r.props,
    urn: r.urn,
    opts: { protect: r.opts.protect },
    propertyDependencies: Object.fromEntries(
      Object.entries(r.propertyDependencies ?? {}).map(([k, deps]) => [k, deps.map((d) => d.urn)]),
    ),
  };
}

function report(violations: Violation[], reportViolation: ReportViolation): void {
  for (const v of violations) reportViolation(v.message, v.urn);
}

/** The context ../policy.ts checks take, from the resources of a stack validation. */
export function stackContext(args: StackValidationArgs): PolicyContext {
  const stack = args.resources.find((r) => r.type === stackType);
  const facts = stack?.props[stackOutputs.facts] as PolicyFacts | undefined;
  if (!stack || !facts) {
    args.notApplicable(
      `the stack exports no ${stackOutputs.facts}: it is not baton's infra program (infra/index.ts)`,
    );
  }
  return {
    servicePorts: facts.servicePorts,
    sshPort: facts.sshPort,
    cutRecords: facts.cutRecords,
    maxCutTtl: facts.maxCutTtl,
    resources: args.resources.filter((r) => r.type !== stackType).map(fromEngine),
    // A getter: the inventory holds addresses a first preview does not know yet.
    get inventory(): Inventory {
      return stack.props[stackOutputs.inventory] as Inventory;
    },
  };
}

function stackPolicy(policy: Policy): StackValidationPolicy {
  return {
    name: policy.name,
    description: policy.description,
    validateStack: (args, reportViolation) =>
      report(policy.check(stackContext(args)), reportViolation),
  };
}

function resourcePolicy(policy: ResourcePolicy): ResourceValidationPolicy {
  return {
    name: policy.name,
    description: policy.description,
    validateResource: (args: ResourceValidationArgs, reportViolation) =>
      report(policy.checkResource(fromEngine(args)), reportViolation),
  };
}

function isResourcePolicy(policy: Policy): policy is ResourcePolicy {
  return 'checkResource' in policy;
}

/**
 * One CrossGuard policy per policy of ../policy.ts, under the same name. A
 * policy that judges each resource alone is a resource policy, enforced on a
 * resource's inputs before it is created or changed; the others look across
 * resources and the Inventory, so they are stack policies.
 */
export const packPolicies: Policies = policies.map((p) =>
  isResourcePolicy(p) ? resourcePolicy(p) : stackPolicy(p),
);
