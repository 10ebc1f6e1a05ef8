export declare const requirement: string
export declare function isSupported (version: string): boolean
export declare function message (version: string): string
