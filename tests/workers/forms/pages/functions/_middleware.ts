// Runs before every function: marks the request in context.data.
export const onRequest: PagesFunction = async (context) => {
  context.data.middleware = "root";
  return context.next();
};

type PagesFunction = (context: {
  request: Request;
  data: Record<string, unknown>;
  next: () => Promise<Response>;
}) => Promise<Response>;
